"""The state machinery and PSNR helper that search and retrain share (nas_sr/train/state.py)."""

from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

from nas_sr.device import native_bf16, use_amp
from nas_sr.metrics import crop_psnrs, psnr_y, quantize
from nas_sr.runs.log import RunLog
from nas_sr.search.loop import Search
from nas_sr.search.supernet import score
from nas_sr.train.recipe import PATIENCE, BlowUpGuard
from nas_sr.train.state import RunState
from nas_sr.train.trainer import Trainer
from search_spaces.genotypes import Genotype, Node
from search_spaces.network import CellSRNet


class Toy(RunState):
    job, checkpoint_file, section = "toy", "toy.pt", "toy"

    def state_dict(self) -> dict[str, Any]:
        return {"extra": 1, **self.run_state()}


def test_both_jobs_share_the_machinery():
    assert issubclass(Search, RunState) and issubclass(Trainer, RunState)
    assert (Search.job, Search.checkpoint_file) == ("search", "checkpoint.pt")
    assert (Trainer.job, Trainer.checkpoint_file) == ("retrain", "last.pt")


def test_divergence_message_names_what_is_kept_and_how_to_go_on(tmp_path):
    run = Toy(tmp_path)
    with pytest.raises(Exception, match=r"^the loss blew up in epoch 1, step 3; no checkpoint "
                                        r"had been written yet\. Lower toy\.lr or set "
                                        r"toy\.grad_clip, then start again$"):
        run.stop_if("blew up", "the loss", ", step 3")
    run.stop_if(None, "the loss")  # nothing wrong: nothing raised
    run.count_epoch(2.0)
    message = str(run.diverged("the reward became nan in epoch 2"))
    assert f"{tmp_path / 'toy.pt'} (after epoch 1) is left as it was" in message
    assert message.endswith(f"then resume: nas-sr toy resume={tmp_path} toy.grad_clip=1.0")


def test_save_and_resume_restore_counters_rng_and_log_offset(tmp_path):
    run = Toy(tmp_path)
    log = RunLog(tmp_path)
    log.log("epoch", epoch=1)
    run.count_epoch(1.5)
    run.save(log, "a.pt", "toy.pt")
    offset = log.offset
    log.close()
    expected = torch.rand(3)  # what the RNG gives after the checkpoint
    state = torch.load(tmp_path / "toy.pt", weights_only=True)
    assert torch.load(tmp_path / "a.pt", weights_only=True).keys() == state.keys()
    again = Toy(tmp_path)
    again.load_run_state(state)
    assert (again.epoch, again.elapsed, again.log_offset) == (1, 1.5, offset) and offset > 0
    assert torch.equal(torch.rand(3), expected)


def test_a_search_checkpoint_from_before_names_its_rng_torch_rng(tmp_path):
    state = Toy(tmp_path).state_dict()
    state["torch_rng"] = state.pop("rng")
    expected = torch.rand(2)
    Toy(tmp_path).load_run_state(state)
    assert torch.equal(torch.rand(2), expected)


def test_crop_psnrs_is_the_per_crop_y_psnr_whatever_the_batch():
    torch.manual_seed(0)
    lq, gt = torch.rand(5, 3, 6, 6), torch.rand(5, 3, 12, 12)
    model = partial(torch.nn.functional.interpolate, scale_factor=2, mode="nearest")
    expected = psnr_y(quantize(model(lq)), quantize(gt), shave=2)
    for batch_size in (1, 2, 5, 64):
        assert torch.equal(crop_psnrs(model, (lq, gt), 2, batch_size), expected)


def test_a_cells_score_is_its_mean_crop_psnr_through_the_shared_weights():
    torch.manual_seed(0)
    net = CellSRNet(2, channels=4, num_cells=1, num_nodes=1).eval()
    g = Genotype((Node(0, "conv_3x3", 1, "identity"),))
    crops = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        expected = psnr_y(quantize(net(crops[0], g)), quantize(crops[1]), shave=2).mean()
    assert score(net, g, crops, 2) == pytest.approx(float(expected), abs=1e-12)


def test_a_loss_spike_that_recovers_is_not_a_divergence():
    guard = BlowUpGuard()
    assert all(guard(x) is None for x in [1.55, 3.0, 0.4] + [1.2] * (PATIENCE - 1) + [0.1])
    assert all(guard(1.2) is None for _ in range(PATIENCE - 1))
    assert "blew up to 1.2" in guard(1.2)  # PATIENCE steps in a row above 1
    assert "blew up to 1e+23" in BlowUpGuard()(1e23)  # hopeless at once
    assert BlowUpGuard()(float("nan")) == "became nan"


def test_native_bf16_on_this_cpu_is_what_its_flags_say():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to read the CPU's flags from")
    flags = {f for line in cpuinfo.read_text().splitlines() if line.startswith("flags")
             for f in line.split(":", 1)[1].split()}
    cpu = torch.device("cpu")
    assert native_bf16(cpu) == bool({"amx_bf16", "avx512_bf16"} & flags)
    assert use_amp("auto", cpu) == native_bf16(cpu)
    assert use_amp(True, cpu) and not use_amp(False, cpu)
