import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import QUIET, make_cfg, srcnn_checkpoint
from nas_sr.archs.baselines import EDSR, ESPCN, FSRCNN, SRCNN, VDSR
from nas_sr.archs.build import build_model, load_model
from nas_sr.checkpoint import save_atomic, write_json
from nas_sr.cli import run_job
from nas_sr.data.images import to_tensor, to_uint8
from nas_sr.data.pairs import load_pairs
from nas_sr.data.sources import resolve_sources
from nas_sr.deploy.predictor import load_predictor, self_ensemble, super_resolve
from nas_sr.errors import TrainingDiverged
from nas_sr.jobs import retrain as retrain_mod
from nas_sr.options import check_options
from nas_sr.runs.log import read_metrics
from nas_sr.train import teacher, trainer
from nas_sr.train.distributed import Dist
from nas_sr.train.ema import WeightAverage
from nas_sr.train.recipe import CLOCKS, LOSSES, cosine_lr
from search_spaces.genotypes import Genotype, GenotypeError, Node
from search_spaces.network import CellSRNet, count_params
from search_spaces.operations import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
# 3 nodes (the config's archs.cell.nodes is 5: the file decides); loose ends n1 and n2
CELL = Genotype((Node(1, "conv_3x3", 0, "identity"), Node(2, "sep_conv_3x3", 1, "dil_conv_3x3"),
                 Node(0, "identity", 2, "conv_3x3")))


@pytest.fixture
def genotype_file(tmp_path):
    path = tmp_path / "genotype.json"
    write_json(path, {**CELL.to_dict(), "scale": 2})
    return path


def folder_cfg(folder, genotype_file, *overrides):
    """The smoke preset on the image_folder fixture: 5 train images, 1 validation image."""
    return make_cfg("retrain", "data=folder", f"data.train_dir={folder}",
                    f"genotype={genotype_file}", *overrides)


def epochs(run_dir):
    return [r for r in read_metrics(run_dir) if r["kind"] == "epoch"]


def model_state(path):
    return torch.load(path, weights_only=True)["model"]


def test_cell_spec_takes_the_genotype_and_the_retrain_width(genotype_file):
    cfg = make_cfg("retrain", f"genotype={genotype_file}", "scale=3",
                   "train.cell.channels=12", "train.cell.cells=3")
    spec = retrain_mod.model_spec(cfg)
    assert spec["genotype"]["nodes"] == [list(n) for n in CELL.nodes]
    assert (spec["channels"], spec["cells"], spec["nodes"]) == (12, 3, 3)
    assert make_cfg("search").archs.cell.channels == 8  # the search's supernet is untouched
    net = build_model(spec)
    assert isinstance(net, CellSRNet) and net.genotype == CELL
    c = 12
    op_params = sum(sum(p.numel() for p in REGISTRY[op].build(c).parameters()) for op in CELL.ops())
    combine = len(CELL.loose_ends()) * c * c + c
    head, tail = 3 * c * 9 + c, c * 27 * 9 + 27
    assert count_params(net) == head + 3 * (op_params + combine) + tail
    assert net(torch.rand(1, 3, 7, 9)).shape == (1, 3, 21, 27)


def test_a_named_genotype_trains_the_cell_its_file_does():
    shipped = ROOT / "nas_sr" / "models" / "cell_x2" / "genotype.json"
    by_name = retrain_mod.model_spec(make_cfg("retrain", "genotype=cell_x2"))
    assert by_name == retrain_mod.model_spec(make_cfg("retrain", f"genotype={shipped}"))
    assert by_name["genotype"]["nodes"][2] == [3, "conv_3x3", 3, "sep_conv_3x3"]


def test_cell_needs_a_genotype_and_models_must_exist(tmp_path):
    with pytest.raises(GenotypeError, match=r"model=cell needs genotype=PATH\|NAME$"):
        retrain_mod.model_spec(make_cfg("retrain"))
    with pytest.raises(GenotypeError, match="nope.json: neither a file nor a named genotype"):
        retrain_mod.model_spec(make_cfg("retrain", f"genotype={tmp_path / 'nope.json'}"))
    with pytest.raises(ValueError, match="model='carn' is unknown"):
        retrain_mod.model_spec(make_cfg("retrain", "model=carn"))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fsrcnn_has_the_papers_shape_and_weight_count(scale):
    d, s, m = 56, 12, 4
    luma = FSRCNN(scale, colors=1)  # the paper's Y-only network: 12,464 weights, any scale
    weights = sum(p.numel() for name, p in luma.named_parameters() if name.endswith("weight")
                  and p.dim() == 4)
    assert weights == 25 * d + d * s + m * 9 * s * s + s * d + 81 * d == 12_464
    rgb = build_model({"name": "fsrcnn", "scale": scale, "d": d, "s": s, "m": m})
    biases_prelu = 2 * (d + s + m * s + d) + 3
    weights = 3 * 25 * d + d * s + m * 9 * s * s + s * d + 3 * 81 * d
    assert count_params(rgb) == weights + biases_prelu
    assert rgb(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)
    assert luma(torch.rand(1, 1, 5, 6)).shape == (1, 1, 5 * scale, 6 * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_has_the_papers_shape_and_weight_count(scale):
    luma = ESPCN(scale, colors=1)  # the paper's Y-only network
    weights = sum(p.numel() for name, p in luma.named_parameters() if name.endswith("weight"))
    assert weights == 25 * 64 + 9 * 64 * 32 + 9 * 32 * scale**2
    rgb = build_model({"name": "espcn", "scale": scale, "f1": 64, "f2": 32})
    assert count_params(rgb) == (3 * 25 * 64 + 64) + (9 * 64 * 32 + 32) + (
        9 * 32 * 3 * scale**2 + 3 * scale**2)
    assert rgb(torch.rand(2, 3, 7, 9)).shape == (2, 3, 7 * scale, 9 * scale)


def test_short_retrain_beats_the_untrained_net_on_photographs(genotype_file, tmp_path):
    cfg = make_cfg("retrain", f"genotype={genotype_file}", "train.epochs=3",
                   "train.iters_per_epoch=12")
    summary = run_job("retrain", cfg, tmp_path)
    records = read_metrics(tmp_path)
    untrained = records[0]["val_psnr"]
    assert records[0]["kind"] == "start" and records[-1]["kind"] == "final"
    assert [r["epoch"] for r in epochs(tmp_path)] == [1, 2, 3]
    assert summary["best_val_psnr"] > untrained + 3  # 14.6 dB untrained, ~20 dB after 36 steps
    model, state = load_model(tmp_path / "best.pt")  # the format evaluate/export read
    assert state["arch"] == summary["arch"] and state["best_psnr"] == summary["best_val_psnr"]
    assert model(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    for key in ("optimizer", "scheduler", "rng", "epoch", "best_psnr"):
        assert key in last
    assert last["epoch"] == 3


@pytest.mark.parametrize("model, kind, options", [
    ("srcnn", SRCNN, []),
    ("fsrcnn", FSRCNN, ["archs.fsrcnn.m=1"]),
    ("espcn", ESPCN, ["archs.espcn.f1=8", "archs.espcn.f2=4"]),
    ("vdsr", VDSR, ["archs.vdsr.depth=3", "archs.vdsr.channels=8", "train.grad_clip=0.01",
                    "train.adjustable_clip=true"]),
    ("edsr_baseline", EDSR, ["archs.edsr_baseline.blocks=1", "archs.edsr_baseline.channels=8",
                             "train.schedule=step", "train.step_epochs=1"]),
])
def test_each_baseline_trains_through_the_job(image_folder, tmp_path, model, kind, options):
    cfg = make_cfg("retrain", "data=folder", f"data.train_dir={image_folder}", f"model={model}",
                   "train.epochs=1", "train.iters_per_epoch=2", *options)
    summary = run_job("retrain", cfg, tmp_path)
    net, state = load_model(tmp_path / "best.pt")
    assert isinstance(net, kind) and state["epoch"] == 1 and summary["model"] == model
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 16, 16)


def test_a_time_budget_stops_at_the_step_that_spends_it_and_sets_the_cosine_by_time(
        image_folder, genotype_file, tmp_path, monkeypatch):
    ticks = iter(range(0, 10**6, 10))  # every clock reading 10 s after the last
    monkeypatch.setitem(CLOCKS, "cpu", lambda: next(ticks))
    # the clock is read at each epoch's start and after each of its 2 steps: 20 s an epoch;
    # the 30 s budget runs out after the 1st step of epoch 2, which ends there
    cfg = folder_cfg(image_folder, genotype_file, "train.epochs=100", "train.iters_per_epoch=2",
                     "train.minutes=0.5", "train.clock=cpu", "train.lr=1e-3", "train.lr_min=1e-5")
    summary = run_job("retrain", cfg, tmp_path)
    records = epochs(tmp_path)
    assert summary["epochs"] == len(records) == 2 and summary["train_only_s"] == 30  # not 40
    assert summary["steps"] == 3 and [r["steps"] for r in records] == [2, 3]
    assert [r["lr"] for r in records] == pytest.approx(
        [cosine_lr(1e-3, 1e-5, spent, 30) for spent in (0, 20)])
    assert all(math.isfinite(r["val_psnr"]) for r in records)  # the cut epoch is validated
    with pytest.raises(ValueError, match="train.minutes works with train.schedule=cosine"):
        check_options("retrain", make_cfg("retrain", "train.minutes=5", "train.schedule=step"))


def test_warmup_ramps_the_scheduled_lr_over_the_first_steps(image_folder, genotype_file,
                                                            tmp_path, monkeypatch):
    used = []
    real = trainer.clip_gradients
    monkeypatch.setattr(trainer, "clip_gradients",
                        lambda params, t, lr: (used.append(lr), real(params, t, lr)))
    cfg = folder_cfg(image_folder, genotype_file, "train.epochs=3", "train.iters_per_epoch=2",
                     "train.warmup_steps=3", "train.lr=1e-3")
    run_job("retrain", cfg, tmp_path)
    scheduled = [r["lr"] for r in epochs(tmp_path) for _ in range(2)]
    assert scheduled[0] == 1e-3 and scheduled[2] < 1e-3  # the cosine goes on beneath it
    ramp = (1 / 3, 2 / 3, 1, 1, 1, 1)
    assert used == pytest.approx([s * w for s, w in zip(scheduled, ramp, strict=True)])
    with pytest.raises(ValueError, match="train.warmup_steps=-1"):
        check_options("retrain", make_cfg("retrain", "train.warmup_steps=-1"))


def test_bf16_autocast_runs_the_forward_in_bf16_and_keeps_fp32_weights(
        image_folder, genotype_file, tmp_path, monkeypatch):
    dtypes = []
    real = trainer.build_model

    def watched(arch):  # the dtype of the upsampler's output in every training forward
        model = real(arch)
        model.tail.register_forward_hook(
            lambda module, args, out: dtypes.append(out.dtype) if module.training else None)
        return model

    monkeypatch.setattr(trainer, "build_model", watched)
    runs = {}
    for amp in ("false", "true"):
        dtypes.clear()
        cfg = folder_cfg(image_folder, genotype_file, "train.epochs=1", f"train.amp={amp}")
        runs[amp] = run_job("retrain", cfg, tmp_path / amp)
        assert set(dtypes) == {torch.bfloat16 if amp == "true" else torch.float32}
    fp32, bf16 = (model_state(tmp_path / amp / "last.pt") for amp in ("false", "true"))
    assert all(v.dtype == torch.float32 for v in bf16.values())
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)  # bf16 rounding took part
    # validation is fp32 either way, and a few bf16 steps learn what fp32 steps do
    assert runs["true"]["best_val_psnr"] == pytest.approx(runs["false"]["best_val_psnr"], abs=0.5)
    with pytest.raises(ValueError, match="train.amp='sometimes'"):
        check_options("retrain", make_cfg("retrain", "train.amp=sometimes"))


def test_train_loss_mse_trains_on_the_mean_squared_error(image_folder, genotype_file,
                                                        tmp_path, monkeypatch):
    calls = {"l1_loss": 0, "mse_loss": 0}
    for name in calls:
        real = getattr(trainer.F, name)
        monkeypatch.setattr(trainer.F, name, lambda a, b, real=real, name=name: (
            calls.__setitem__(name, calls[name] + 1), real(a, b))[1])
    cfg = folder_cfg(image_folder, genotype_file, "train.epochs=1", "train.loss=mse")
    summary = run_job("retrain", cfg, tmp_path / "mse")
    assert calls == {"l1_loss": 0, "mse_loss": summary["steps"]} and summary["steps"] > 0
    # a resumed run takes the loss its command names: an L1 run ends on MSE
    run_job("retrain", folder_cfg(image_folder, genotype_file, "train.epochs=1"), tmp_path / "l1")
    command = [f"resume={tmp_path / 'l1'}", "train.epochs=2", "train.loss=mse"]
    monkeypatch.setattr("nas_sr.cli._task_overrides", lambda: command)
    run_job("retrain", make_cfg("retrain", *command))
    assert calls == {"l1_loss": summary["steps"], "mse_loss": 2 * summary["steps"]}
    with pytest.raises(ValueError, match="train.loss='l2': use l1 or mse"):
        check_options("retrain", make_cfg("retrain", "train.loss=l2"))


@pytest.mark.parametrize("name", ["l1", "mse"])
def test_train_luma_moves_the_loss_onto_the_y_channel_the_benchmarks_score(name):
    gt = torch.rand(2, 3, 16, 16)
    luma = torch.tensor([65.481, 128.553, 24.966])  # BT.601, as the metrics weigh RGB
    colour = torch.linalg.cross(luma, torch.ones(3)).view(3, 1, 1)  # no Y change: w . v = 0
    grey = torch.ones(3, 1, 1)  # a brightness change: all Y
    colour_only, brightness = gt + 0.02 * colour / colour.norm(), gt + 0.02 * grey
    full = [trainer.training_loss(name, a)(colour_only, gt).item() for a in (0.0, 0.5, 1.0)]
    assert full[0] > 0 and full[1] == pytest.approx(full[0] / 2, rel=1e-3)
    assert full[2] == pytest.approx(0, abs=1e-6)  # all on Y: a colour error costs nothing
    plain = getattr(trainer.F, LOSSES[name])
    assert trainer.training_loss(name, 0.0) is plain
    # on Y, a brightness error counts as Y's weights scale it (219/255 of the RGB step)
    scale = (luma.sum() / 255).item() ** (2 if name == "mse" else 1)
    on_y = trainer.training_loss(name, 1.0)(brightness, gt).item()
    assert on_y == pytest.approx(plain(brightness, gt).item() * scale, rel=1e-4)
    for bad in ("1.5", "-0.1"):
        with pytest.raises(ValueError, match=rf"train.luma={bad}: the loss's share on the Y"):
            check_options("retrain", make_cfg("retrain", f"train.luma={bad}"))


def test_a_retrain_with_train_luma_takes_its_loss_on_y_and_rgb(image_folder, genotype_file,
                                                               tmp_path, monkeypatch):
    ranks, real = [], trainer.F.l1_loss
    monkeypatch.setattr(trainer.F, "l1_loss", lambda a, b: (ranks.append(a.dim()), real(a, b))[1])
    cfg = folder_cfg(image_folder, genotype_file, "train.epochs=1", "train.luma=0.5")
    steps = run_job("retrain", cfg, tmp_path / "luma")["steps"]
    assert steps > 0 and ranks == [3, 4] * steps  # Y maps (N, H, W), then RGB (N, 3, H, W)


def test_train_reward_images_adds_the_searchs_reward_half_never_the_hold_out(
        image_folder, genotype_file, tmp_path):
    src = resolve_sources(folder_cfg(image_folder, genotype_file).data, 2)
    for flag, images in ((False, src.train), (True, src.train + src.reward)):
        cfg = folder_cfg(image_folder, genotype_file, f"train.reward_images={flag}",
                         "train.val_crops=null")  # whole validation images, to compare
        crops, val = trainer.load_data(cfg, Dist())
        assert [gt.tobytes() for gt, _ in crops.store.pairs] == [
            gt.tobytes() for gt, _ in load_pairs(images, 2, 1, progress=False)]
        holdout = load_pairs(src.holdout, 2, 1, progress=False)  # validation, either way
        assert len(val) == len(holdout)
        assert all(torch.equal(v_gt[0], to_tensor(gt))
                   for (_, v_gt), (gt, _) in zip(val, holdout, strict=True))
        trainer.load_data(folder_cfg(image_folder, genotype_file, f"train.reward_images={flag}",
                                     "data.cache=h5", f"data.cache_dir={tmp_path}"), Dist())
    # one cache file per training set: two runs side by side never rebuild each other's
    # (named by the images they hold: the name ends in a hash of them)
    assert sorted(re.sub(r"_[0-9a-f]{16}\.h5$", ".h5", p.name) for p in tmp_path.glob("*.h5")
                  ) == ["folder_x2_train.h5", "folder_x2_train_reward.h5"]


def test_train_teacher_blends_its_x8_outputs_into_the_targets_once_per_teacher(
        image_folder, genotype_file, tmp_path, monkeypatch):
    model = srcnn_checkpoint(tmp_path / "teacher.pt", 2)
    options = [f"train.teacher={model}", "train.teacher_weight=0.25", "data.cache=h5",
               f"data.cache_dir={tmp_path / 'cache'}"]
    plain, _ = trainer.load_data(folder_cfg(image_folder, genotype_file, *options[2:]), Dist())
    crops, _ = trainer.load_data(folder_cfg(image_folder, genotype_file, *options), Dist())
    net = load_predictor(str(model), 2).net
    for index in range(4):  # the same crops (position, flip) as without a teacher ...
        lq, target = crops[index]
        plain_lq, gt = plain[index]
        assert torch.equal(lq, plain_lq) and not torch.equal(target, gt)
    gt, lq = crops.store.store.pair(0)  # ... towards 0.75 GT + 0.25 x8 teacher output
    with torch.inference_mode():
        taught = to_uint8(self_ensemble(net, to_tensor(lq)[None])[0])
    y, x, size = 3, 5, 8
    target, crop_lq = crops.store.crop(0, y, x, size, 2)
    assert torch.equal(to_tensor(crop_lq), to_tensor(lq[y:y + size, x:x + size]))
    expected = 0.75 * gt[6:22, 10:26].astype("float32") + 0.25 * taught[6:22, 10:26]
    assert abs(target - expected).max() < 1e-4 and abs(target - gt[6:22, 10:26]).max() > 1
    # the outputs are cached: a second run reads them; another teacher gets its own file
    monkeypatch.setattr(teacher, "super_resolve", lambda *a, **k: pytest.fail("recomputed"))
    monkeypatch.setattr(teacher, "load_predictor", lambda *a, **k: pytest.fail("reloaded"))
    trainer.load_data(folder_cfg(image_folder, genotype_file, *options), Dist())
    assert len(list((tmp_path / "cache").glob("teacher_x2_*.h5"))) == 1
    monkeypatch.undo()
    options[0] = f"train.teacher={srcnn_checkpoint(tmp_path / 'other.pt', 2, seed=1)}"
    trainer.load_data(folder_cfg(image_folder, genotype_file, *options), Dist())
    assert len(list((tmp_path / "cache").glob("teacher_x2_*.h5"))) == 2
    # a whole run trains towards them; a teacher of another scale, no model file or a
    # share out of (0, 1] is refused
    summary = run_job("retrain", folder_cfg(image_folder, genotype_file, *options),
                      tmp_path / "taught")
    assert summary["steps"] > 0 and math.isfinite(summary["best_val_psnr"])
    with pytest.raises(ValueError, match="wrong scale"):
        trainer.load_data(folder_cfg(image_folder, genotype_file, *options,
                                     f"train.teacher={srcnn_checkpoint(tmp_path / 'x3.pt', 3)}"),
                          Dist())
    with pytest.raises(FileNotFoundError, match="train.teacher=bicubic: no such model file"):
        trainer.load_data(folder_cfg(image_folder, genotype_file, *options,
                                     "train.teacher=bicubic"), Dist())
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=rf"train.teacher_weight={bad}: the teacher's"):
            check_options("retrain", make_cfg("retrain", f"train.teacher_weight={bad}"))


def test_weight_average_ramps_its_decay_then_holds_it():
    source = torch.nn.Linear(2, 1)
    average = WeightAverage(source, 0.9)
    start = source.weight.detach().clone()
    with torch.no_grad():
        source.weight.add_(1.0)
    average.update(source, 1)  # decay min(0.9, 2 / 11): mostly the new weights
    after_one = start + (1 - 2 / 11)
    assert torch.allclose(average.model.weight, after_one)
    average.update(source, 1000)  # the full decay: a tenth of the way to the new weights
    assert torch.allclose(average.model.weight, after_one + 0.1 * (start + 1 - after_one))
    assert not average.model.weight.requires_grad and source.weight.requires_grad
    with pytest.raises(ValueError, match="decay=1"):
        WeightAverage(source, 1)
    with pytest.raises(ValueError, match=r"train.ema=1.5: a decay in \[0, 1\)"):
        check_options("retrain", make_cfg("retrain", "train.ema=1.5"))


def test_train_ema_validates_and_keeps_the_average_beside_the_trained_weights(
        image_folder, genotype_file, tmp_path, monkeypatch):
    validated = []
    real = trainer.validate
    monkeypatch.setattr(trainer, "validate", lambda model, *a, **k: (
        validated.append(model), real(model, *a, **k))[1])
    cfg = folder_cfg(image_folder, genotype_file, "train.epochs=2", "train.ema=0.9")
    summary = run_job("retrain", cfg, tmp_path / "ema")
    last = torch.load(tmp_path / "ema" / "last.pt", weights_only=True)
    assert set(last["model"]) == set(last["train_model"])
    assert any(not torch.equal(last["model"][k], last["train_model"][k]) for k in last["model"])
    # the kept validation is the average's; the trained weights' is logged beside it
    # (the untrained net once, then per epoch the average and the trained weights)
    average, stepped = [validated[0], *validated[1::2]], validated[2::2]
    assert len(validated) == 5 and all(not m.training and not any(
        p.requires_grad for p in m.parameters()) for m in average)
    assert all(all(p.requires_grad for p in m.parameters()) for m in stepped)
    assert all(r["val_psnr_trained"] != r["val_psnr"] for r in epochs(tmp_path / "ema"))
    model, state = load_model(tmp_path / "ema" / "best.pt")
    assert state["val_psnr"] == summary["best_val_psnr"]
    assert all(torch.equal(model.state_dict()[k], validated[-2].state_dict()[k])
               for k in model.state_dict()) == (summary["best_epoch"] == 2)
    # turned on at a resume, the average starts from the weights trained so far
    run_job("retrain", folder_cfg(image_folder, genotype_file, "train.epochs=1"),
            tmp_path / "plain")
    trained = model_state(tmp_path / "plain" / "last.pt")
    command = [f"resume={tmp_path / 'plain'}", "train.epochs=2", "train.ema=0.999"]
    monkeypatch.setattr("nas_sr.cli._task_overrides", lambda: command)
    monkeypatch.setattr(trainer.Trainer, "train_epoch", lambda self: {
        "loss": 0.0, "lr": 0.0, "steps": self.steps})  # no step: the average stays put
    run_job("retrain", make_cfg("retrain", *command))
    resumed = torch.load(tmp_path / "plain" / "last.pt", weights_only=True)
    for key, value in trained.items():
        assert torch.equal(resumed["model"][key], value) and torch.equal(
            resumed["train_model"][key], value), key


# a warm-up of 12 steps outlasts the kill in epoch 3: the resumed run picks the ramp up
@pytest.mark.parametrize("options", [[], ["train.warmup_steps=12"], ["train.amp=true"],
                                     ["train.ema=0.9"]], ids=["plain", "warmup", "bf16", "ema"])
def test_kill_and_resume_equals_an_uninterrupted_run(image_folder, genotype_file, tmp_path,
                                                     monkeypatch, options):
    cfg = folder_cfg(image_folder, genotype_file, "train.epochs=3", *options)
    run_job("retrain", cfg, tmp_path / "full")

    real, calls = trainer.F.l1_loss, {"n": 0}

    def dying(a, b):  # killed at the 2nd of the 4 steps of epoch 3
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real(a, b)

    monkeypatch.setattr(trainer.F, "l1_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        run_job("retrain", cfg, tmp_path / "killed")
    monkeypatch.setattr(trainer.F, "l1_loss", real)
    assert torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["epoch"] == 2
    summary = run_job("retrain", make_cfg("retrain", f"resume={tmp_path / 'killed'}"))

    full, again = (model_state(tmp_path / d / "last.pt") for d in ("full", "killed"))
    for key in full:
        assert torch.equal(full[key], again[key]), key
    assert epochs(tmp_path / "full") == [
        {**r, **{k: f[k] for k in ("train_time_s", "val_time_s", "train_s")}}
        for r, f in zip(epochs(tmp_path / "killed"), epochs(tmp_path / "full"), strict=True)]
    full_summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["best_val_psnr"] == full_summary["best_val_psnr"]


def test_nan_loss_stops_clearly_and_keeps_last_checkpoint(image_folder, genotype_file, tmp_path,
                                                          monkeypatch):
    real, calls = trainer.F.l1_loss, {"n": 0}

    def poisoned(a, b):
        calls["n"] += 1
        return real(a, b) * (float("nan") if calls["n"] > 5 else 1.0)  # epoch 2, step 2

    monkeypatch.setattr(trainer.F, "l1_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan in epoch 2, step 2; .*last\.pt "
                                                r"\(after epoch 1\) is left as it was"):
        run_job("retrain", folder_cfg(image_folder, genotype_file), tmp_path)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in epochs(tmp_path)] == [1]


def test_a_finite_blow_up_stops_and_keeps_the_last_good_checkpoint(image_folder, genotype_file,
                                                                    tmp_path, cli):
    cfg = folder_cfg(image_folder, genotype_file, "train.epochs=1")
    run_job("retrain", cfg, tmp_path)  # a good epoch, then a resume at lr=10 blows up
    good = model_state(tmp_path / "last.pt")
    error = cli("retrain", f"resume={tmp_path}", "train.epochs=2", "train.lr=10")
    assert re.search(r"loss blew up to .* in epoch 2, step \d; .*last\.pt \(after epoch 1\) "
                     r"is left as it was", error), error
    for key, value in model_state(tmp_path / "last.pt").items():
        assert torch.equal(value, good[key]), key
    assert [r["epoch"] for r in epochs(tmp_path)] == [1]


def test_nan_weights_after_an_epoch_keep_the_last_good_checkpoint(image_folder, genotype_file,
                                                                 tmp_path, monkeypatch):
    real, calls = trainer.Trainer.validate, {"n": 0}

    def broken(self):  # call 1 is the untrained model, 2 ends epoch 1, 3 ends epoch 2
        calls["n"] += 1
        return float("nan") if calls["n"] == 3 else real(self)

    monkeypatch.setattr(trainer.Trainer, "validate", broken)
    with pytest.raises(TrainingDiverged, match=r"validation PSNR became nan in epoch 2; "
                                                r".*last\.pt \(after epoch 1\) is left"):
        run_job("retrain", folder_cfg(image_folder, genotype_file), tmp_path)
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == 1


def test_x3_starts_from_x2_weights(image_folder, genotype_file, tmp_path):
    x2 = retrain_mod.model_spec(folder_cfg(image_folder, genotype_file))
    torch.manual_seed(1)
    source = build_model(x2)
    save_atomic({"arch": x2, "model": source.state_dict()}, tmp_path / "x2.pt")
    cfg = folder_cfg(image_folder, genotype_file, "scale=3", f"init_from={tmp_path / 'x2.pt'}",
                     "train.epochs=1", "train.iters_per_epoch=1")
    run_job("retrain", cfg, tmp_path / "x3")
    start = read_metrics(tmp_path / "x3")[0]
    assert start["init_skipped"] == ["tail.0.bias", "tail.0.weight"]  # the x3 upsampler

    x3 = build_model({**x2, "scale": 3})
    assert trainer.init_from(x3, tmp_path / "x2.pt") == ["tail.0.bias", "tail.0.weight"]
    torch.testing.assert_close(x3.cells[1].combine.weight, source.cells[1].combine.weight)
    with pytest.raises(ValueError, match="none of its tensors fits this model"):
        trainer.init_from(SRCNN(2), tmp_path / "x2.pt")


def test_a_recursive_cell_grows_from_a_trained_one_and_ships_as_one_model(
        image_folder, genotype_file, tmp_path):
    once = retrain_mod.model_spec(folder_cfg(image_folder, genotype_file))
    torch.manual_seed(1)
    source = build_model(once).eval()
    save_atomic({"arch": once, "model": source.state_dict()}, tmp_path / "once.pt")
    cfg = folder_cfg(image_folder, genotype_file, f"init_from={tmp_path / 'once.pt'}",
                     "train.cell.recursions=2", "train.epochs=1", "train.iters_per_epoch=2")
    run_job("retrain", cfg, tmp_path / "twice")
    assert read_metrics(tmp_path / "twice")[0]["init_skipped"] == ["gates"]
    model, state = load_model(tmp_path / "twice" / "best.pt")
    assert state["arch"]["recursions"] == 2 and model.gates.abs().sum() > 0  # they trained
    assert count_params(model) == count_params(source) + model.gates.numel()
    lq = torch.rand(1, 3, 10, 9, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():  # its fused inference form runs both passes
        got = super_resolve(load_predictor(str(tmp_path / "twice" / "best.pt"),
                                           runtime="eager"), lq)
        torch.testing.assert_close(got, model(lq), atol=1e-5, rtol=0)
        assert (model(lq) - source(lq)).abs().max() > 0


def test_ddp_two_processes_match_one(image_folder, genotype_file, tmp_path):
    """torchrun with 2 CPU processes (gloo): each takes half of every global batch; DDP's
    gradient averaging makes rank 0's weights those of a single-process run."""
    overrides = ["preset=smoke", "logger.progress=false", "device=cpu", "data=folder",
                 f"data.train_dir={image_folder}", f"genotype={genotype_file}"]
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "nas_sr.cli", "retrain", *overrides, f"hydra.run.dir={tmp_path / 'ddp'}"],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("best val PSNR") == 1  # rank 0 alone reports and writes
    run_job("retrain", make_cfg("retrain", *overrides[3:]), tmp_path / "one")

    ddp, one = model_state(tmp_path / "ddp" / "best.pt"), model_state(tmp_path / "one" / "best.pt")
    for key in one:
        torch.testing.assert_close(ddp[key], one[key], atol=1e-5, rtol=1e-4)
    start = read_metrics(tmp_path / "ddp")[0]
    assert start["world_size"] == 2
    for a, b in zip(epochs(tmp_path / "ddp"), epochs(tmp_path / "one"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["val_psnr"] == pytest.approx(b["val_psnr"], abs=1e-3)


def test_cli_without_genotype_is_one_clear_line(tmp_path, cli):
    error = cli("retrain", *QUIET, f"hydra.run.dir={tmp_path}")
    assert error.startswith("nas-sr retrain: error: model=cell needs genotype=PATH")
