import json
import shutil

import pytest
import torch

from conftest import QUIET, make_cfg
from controllers import Controller
from nas_sr.cli import run_job
from nas_sr.errors import TrainingDiverged
from nas_sr.options import check_options
from nas_sr.runs.log import read_metrics
from nas_sr.search import loop as search_loop
from search_spaces.genotypes import Genotype, load_genotype


def controller_records(run_dir):
    return [r for r in read_metrics(run_dir) if r["kind"] == "controller"]


def test_search_writes_the_run_folder(smoke_search):
    for name in ("config.yaml", "history.jsonl", "metrics.jsonl", "checkpoint.pt",
                 "genotype.json", "summary.json", "plots/reward.png", "plots/best_cell.png"):
        assert (smoke_search / name).is_file(), name
    summary = json.loads((smoke_search / "summary.json").read_text())
    genotype = load_genotype(smoke_search / "genotype.json")
    assert genotype.num_nodes == 5
    assert summary["genotype"]["nodes"] == [list(n) for n in genotype.nodes]
    assert summary["params"] > 0 and summary["val_psnr"] > 10
    records = controller_records(smoke_search)
    assert [r["controller_step"] for r in records] == list(range(1, 21))  # 2 epochs x 10
    for key in ("genotype", "reward", "baseline", "advantage", "entropy", "log_prob"):
        assert key in records[0]
    epochs = [r for r in read_metrics(smoke_search) if r["kind"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2] and epochs[0]["loss"] > 0


@pytest.mark.parametrize("options", [[], ["search.amp=true"]], ids=["fp32", "bf16"])
def test_kill_and_resume_across_the_warmup_boundary_equals_an_uninterrupted_run(
        tmp_path, monkeypatch, options):
    # 4 epochs, the first 2 a warm-up: kill in epoch 3, the first with policy updates
    cfg = make_cfg("search", "search.epochs=4", "search.warmup=0.5", *options)
    run_job("search", cfg, tmp_path / "full")

    real_update = Controller.update
    calls = {"n": 0}

    def dying_update(self, samples, rewards):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 3's second batch of 5
            raise KeyboardInterrupt
        return real_update(self, samples, rewards)

    monkeypatch.setattr(Controller, "update", dying_update)
    with pytest.raises(KeyboardInterrupt):
        run_job("search", cfg, tmp_path / "killed")
    monkeypatch.setattr(Controller, "update", real_update)
    # the log holds the 5 steps of the killed epoch; resuming drops and redoes them
    assert len(controller_records(tmp_path / "killed")) == 25
    resumed = run_job("search", make_cfg("search", f"resume={tmp_path / 'killed'}"))

    full, again = controller_records(tmp_path / "full"), controller_records(tmp_path / "killed")
    assert [r["controller_step"] for r in again] == list(range(1, 41))
    for a, b in zip(full, again, strict=True):
        assert a["genotype"] == b["genotype"]
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-9)
    full_summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert resumed["genotype"] == full_summary["genotype"]
    assert resumed["val_psnr"] == pytest.approx(full_summary["val_psnr"], abs=1e-9)


def test_search_amp_trains_the_shared_weights_in_bf16_and_scores_in_fp32(tmp_path,
                                                                         monkeypatch):
    dtypes = {"train": set(), "score": set()}
    real = search_loop.build_supernet

    def watched(cfg):
        net = real(cfg)
        net.tail.register_forward_hook(lambda module, args, out: dtypes[
            "train" if module.training else "score"].add(out.dtype))
        return net

    monkeypatch.setattr(search_loop, "build_supernet", watched)
    summary = run_job("search", make_cfg("search", "search.epochs=1", "search.amp=true"),
                      tmp_path)
    assert dtypes == {"train": {torch.bfloat16}, "score": {torch.float32}}
    assert summary["val_psnr"] > 10
    with pytest.raises(ValueError, match="search.amp=1"):
        check_options("search", make_cfg("search", "search.amp=1"))


def test_warmup_samples_uniformly_and_never_updates_the_policy(tmp_path, monkeypatch):
    cfg = make_cfg("search", "search.epochs=4", "search.warmup=0.5")
    search = search_loop.Search(cfg, tmp_path)
    policy_draws = {"n": 0}
    real_sample = type(search.controller).sample

    def counting_sample(self, *args, **kwargs):
        policy_draws["n"] += 1
        return real_sample(self, *args, **kwargs)

    monkeypatch.setattr(type(search.controller), "sample", counting_sample)
    uniform_draws = {"fair": 0, "uniform": 0}
    for name in uniform_draws:  # the fair sampler's children, the uniform scored cells
        sampler = getattr(search, name)

        def counted(*args, name=name, real=sampler.sample):
            uniform_draws[name] += 1
            return real(*args)
        monkeypatch.setattr(sampler, "sample", counted)
    before = {k: v.clone() for k, v in search.controller.state_dict().items()}
    log = search_loop.RunLog(tmp_path)
    for _ in range(2):  # the two warm-up epochs
        assert search.in_warmup
        search.train_shared()
        search.train_controller(log)
        search.epoch += 1
    assert policy_draws["n"] == 0  # neither training children nor scored cells:
    assert uniform_draws == {"fair": 2 * cfg.search.batches_per_epoch,  # each child fair
                             "uniform": 2 * cfg.controller.steps_per_epoch}  # each cell
    for k, v in search.controller.state_dict().items():
        torch.testing.assert_close(v, before[k], equal_nan=True)
    assert not search.in_warmup
    search.train_controller(log)
    log.close()
    assert policy_draws["n"] == 10
    changed = any(not torch.equal(v, before[k]) for k, v in
                  search.controller.state_dict().items() if v.dtype != torch.float64)
    assert changed  # after the warm-up the policy steps
    records = controller_records(tmp_path)
    assert [r["warmup"] for r in records] == [True] * 20 + [False] * 10
    assert "baseline" not in records[0] and "baseline" in records[-1]


@pytest.mark.parametrize("controller", ["enas", "random"])
def test_every_controller_adds_as_many_final_candidates(tmp_path, monkeypatch, controller):
    cfg = make_cfg("search", f"controller={controller}", "search.final_samples=3",
                   "search.final_top=1")
    search = search_loop.Search(cfg, tmp_path)
    draws = []
    real_sample = type(search.controller).sample

    def counting_sample(self, *args, **kwargs):
        draws.append(kwargs.get("greedy", False))
        return real_sample(self, *args, **kwargs)

    monkeypatch.setattr(type(search.controller), "sample", counting_sample)
    search.select()  # on the untrained supernet: only the candidates are counted
    # ENAS: 3 draws of its policy and its greedy cell; random: 4 draws
    assert draws == ([False] * 3 + [True] if controller == "enas" else [False] * 4)


def test_the_chosen_cell_is_within_budget_and_pareto_is_written(tmp_path):
    unlimited = run_job("search", make_cfg("search"), tmp_path / "free")
    limit = unlimited["cost_at_retrain_width"]["params"] - 1  # the free choice is over it
    summary = run_job("search", make_cfg("search", f"search.budget.params={limit}",
                                         "logger.plots=true"), tmp_path / "budget")
    assert summary["cost_at_retrain_width"]["params"] <= limit
    pareto = json.loads((tmp_path / "budget" / "pareto.json").read_text())
    assert len(pareto["cells"]) == summary["cells_scored"] >= 20
    chosen = [c for c in pareto["cells"] if c.get("chosen")]
    assert len(chosen) == 1 and chosen[0]["within_budget"] and chosen[0]["params"] <= limit
    # the chosen cell is the best within budget among those scored on the final crops
    finals = [c for c in pareto["cells"] if "final_psnr" in c]
    assert all(c["within_budget"] for c in finals)
    assert chosen[0]["final_psnr"] == max(c["final_psnr"] for c in finals)
    front = pareto["front"]["params"]
    costs = [pareto["cells"][i]["params"] for i in front]
    psnrs = [pareto["cells"][i]["psnr"] for i in front]
    assert costs == sorted(costs) and psnrs == sorted(psnrs)  # cheaper is worse on a front
    assert (tmp_path / "budget" / "plots" / "pareto.png").is_file()


def test_a_finished_search_reselects_under_a_target_budget_on_resume(smoke_search, tmp_path,
                                                                     cli):
    shutil.copytree(smoke_search, tmp_path / "run")
    first = json.loads((tmp_path / "run" / "summary.json").read_text())
    before = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    budget = first["cost_at_retrain_width"]["params"] * 2
    assert cli("search", f"resume={tmp_path / 'run'}", f"search.budget.params={budget}",
               "search.budget.mode=target", "search.budget.beta=100") is None
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["controller_steps"] == first["controller_steps"]  # nothing trained again:
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    for weights in ("supernet", "controller"):  # neither the shared weights nor the policy
        old, new = (s[weights] if weights == "supernet" else s[weights]["model"]
                    for s in (before, after))
        assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    cells = json.loads((tmp_path / "run" / "pareto.json").read_text())["cells"]
    # a steep target penalty: the chosen cell is the eligible one nearest the budget
    nearest = max(c["params"] for c in cells if c["within_budget"])
    assert summary["cost_at_retrain_width"]["params"] == nearest > first[
        "cost_at_retrain_width"]["params"]
    assert all(c["penalty"] > 0 for c in cells if c["params"] != budget)


def test_another_seed_another_search(smoke_search, tmp_path):
    # the same seed giving the same search is the resume test above (exact equality)
    run_job("search", make_cfg("search", "search.epochs=1", "seed=1"), tmp_path)
    seed0, seed1 = controller_records(smoke_search)[:10], controller_records(tmp_path)
    assert [r["genotype"] for r in seed0] != [r["genotype"] for r in seed1]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    cfg = make_cfg("search", "search.epochs=2")
    real = search_loop.F.l1_loss
    calls = {"n": 0}

    def poisoned(a, b):
        calls["n"] += 1
        return real(a, b) * (float("nan") if calls["n"] > 4 else 1.0)  # NaN in epoch 2

    monkeypatch.setattr(search_loop.F, "l1_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"shared-weight loss became nan in epoch 2; "
                                                r".*checkpoint\.pt \(after epoch 1\) is left"):
        run_job("search", cfg, tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["controller_step"] == 10


def test_random_controller_search(tmp_path):
    summary = run_job("search", make_cfg("search", "controller=random"), tmp_path)
    assert summary["controller"] == "random" and len(controller_records(tmp_path)) == 20


def test_wandb_offline_run_folder_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_job("search", make_cfg("search", "search.epochs=1", "logger.wandb.enabled=true"),
            tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert any(runs[0].rglob("*.wandb"))  # the run's event log, ready for `wandb sync`


def test_a_finite_blow_up_stops_the_search_before_a_genotype(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"shared-weight loss blew up to .* in epoch 1; "
                                                r"no checkpoint had been written yet"):
        run_job("search", make_cfg("search", "search.lr=10"), tmp_path)
    assert not (tmp_path / "genotype.json").exists()


def test_cli_smoke_run_and_help(tmp_path, cli, capsys):
    cli("--help")
    out = capsys.readouterr().out
    assert "search" in out and "retrain" in out
    assert cli("search", *QUIET, "search.epochs=1", f"hydra.run.dir={tmp_path}") is None
    assert "543,581,798,400 decision sequences" in capsys.readouterr().out
    assert (tmp_path / "genotype.json").is_file()


def test_cli_bad_data_is_one_clear_line(tmp_path, cli):
    (tmp_path / "empty").mkdir()
    error = cli("search", *QUIET, "data=folder", f"data.train_dir={tmp_path / 'empty'}",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert error.startswith("nas-sr search: error:") and "no images found" in error


def test_the_leaderboard_holds_the_best_scored_cells_each_at_its_best_reward(smoke_search):
    board = (smoke_search / "leaderboard.md").read_text().splitlines()
    records = [r for r in read_metrics(smoke_search) if r["kind"] == "controller"]
    cells = {str(Genotype.from_dict({"nodes": r["genotype"]})) for r in records}
    assert board[0] == f"# Best {min(10, len(cells))} of {len(cells)} cells scored"
    rows = [line.split(" | ") for line in board[4:]]
    rewards = [float(row[1]) for row in rows]
    assert rewards == sorted(rewards, reverse=True) and len(rows) == min(10, len(cells))
    assert rewards[0] == pytest.approx(max(r["reward"] for r in records), abs=5e-4)
    assert len({row[-1] for row in rows}) == len(rows)  # each cell once
