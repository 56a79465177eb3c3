"""The proxy reward: cells trained briefly on their own, in the search and in rank."""

import json
import shutil

import pytest
import torch
from scipy import stats

from conftest import make_cfg
from controllers import RandomController
from nas_sr.cli import run_job
from nas_sr.data.crops import RandomCrops
from nas_sr.data.pairs import PairStore
from nas_sr.errors import ConfigError
from nas_sr.options import check_options
from nas_sr.runs.log import read_metrics
from nas_sr.search import proxy as proxy_mod
from nas_sr.search.loop import Search
from nas_sr.search.proxy import ProxyReward, ProxySetting, proxy_batches, proxy_score
from nas_sr.search.stats import variance_components
from search_spaces.genotypes import Genotype

TINY = ProxySetting(channels=4, cells=1, steps=6, batch_size=2, patch_size=16, lr=1e-3)
PROXY = ["search.reward=proxy", "search.proxy.channels=4", "search.proxy.cells=1",
         "search.proxy.steps=4", "search.proxy.batch_size=2", "search.proxy.patch_size=16"]
TINY_RECIPE = '["preset=smoke","train.epochs=1","train.iters_per_epoch=2","train.val_crops=4"]'


GEN = torch.Generator().manual_seed(0)
STORE = PairStore([(gt, gt[::2, ::2].copy()) for gt in (
    torch.randint(0, 256, (40, 48, 3), generator=GEN, dtype=torch.uint8).numpy()
    for _ in range(3))])


@pytest.fixture(scope="module")
def data():
    crops = proxy_batches(STORE, 2, TINY, seed=5)
    reward = proxy_batches(STORE, 2, ProxySetting(**{**vars(TINY), "steps": 1,
                                                     "batch_size": 4}), 9)
    return crops, {"reward": tuple(t.float() / 255 for t in reward)}


def cells(n):
    rng = torch.Generator().manual_seed(0)
    return [RandomController(5).sample(rng).genotype for _ in range(n)]


def test_the_proxy_crops_are_the_seeded_random_crops_in_order_kept_exactly_as_8_bit(data):
    (lq, gt), _ = data
    assert lq.dtype == gt.dtype == torch.uint8
    assert lq.shape == (12, 3, 8, 8) and gt.shape == (12, 3, 16, 16)  # steps x batch crops
    crops = RandomCrops(STORE, 2, 16, 12, seed=5)
    for i in (0, 7, 11):
        want_lq, want_gt = crops[i]
        assert torch.equal(lq[i].float() / 255, want_lq) and torch.equal(gt[i].float() / 255,
                                                                         want_gt)


def test_a_proxy_score_is_fixed_by_its_seed_and_leaves_the_global_rng_alone(data):
    crops, reward = data
    g = cells(1)[0]
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = proxy_score(g, crops, reward, 2, TINY, seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # a search's resume stays exact
    assert proxy_score(g, crops, reward, 2, TINY, seed=0) == a
    assert proxy_score(g, crops, reward, 2, TINY, seed=1) != a
    assert 0 < a["reward"] < 100
    both = proxy_score(g, crops, {**reward, "final": reward["reward"]}, 2, TINY, seed=0)
    assert both == {"reward": a["reward"], "final": a["reward"]}  # one run, every crop set


def test_a_diverged_proxy_run_scores_nan(data, monkeypatch):
    crops, reward = data
    monkeypatch.setattr(proxy_mod.F, "l1_loss", lambda a, b: (a - b).abs().mean() * torch.nan)
    assert torch.isnan(torch.tensor(proxy_score(cells(1)[0], crops, reward, 2, TINY,
                                                seed=0)["reward"]))


def test_each_cell_and_seed_trains_once_and_the_scores_survive_a_checkpoint(data, monkeypatch):
    crops, reward = data
    calls = []
    real = proxy_mod.proxy_score

    def counting(genotype, *args):
        calls.append((genotype, args[4]))
        return real(genotype, *args)

    monkeypatch.setattr(proxy_mod, "proxy_score", counting)
    proxy = ProxyReward(TINY, crops, reward, 2, torch.device("cpu"), torch.contiguous_format)
    g, h = cells(2)
    both = proxy.psnr(g, [0, 1], "reward")
    assert both == pytest.approx((proxy.psnr(g, [0], "reward") + proxy.psnr(g, [1], "reward"))
                                 / 2)
    proxy.psnr(h, [0], "reward")
    assert calls == [(g, 0), (g, 1), (h, 0)]  # the repeats were remembered
    restored = ProxyReward(TINY, crops, reward, 2, torch.device("cpu"), torch.contiguous_format)
    restored.load_state_dict(json.loads(json.dumps(proxy.state_dict())))  # plain values
    assert restored.psnr(g, [1, 0], "reward") == both and len(calls) == 3
    # a checkpoint from before spaces were a choice keyed its cells by their decisions
    old = proxy.state_dict()
    old["scores"] = [[Genotype.from_dict({"nodes": k}).to_decisions(), v]
                     for k, v in old["scores"]]
    restored.load_state_dict(old)
    assert restored.psnr(h, [0], "reward") == proxy.psnr(h, [0], "reward") and len(calls) == 3
    # scores of another setting measured something else: a changed proxy trains again
    other = ProxyReward(ProxySetting(**{**vars(TINY), "steps": 5}), crops, reward, 2,
                        torch.device("cpu"), torch.contiguous_format)
    other.load_state_dict(proxy.state_dict())
    other.psnr(g, [0], "reward")
    assert len(calls) == 4


def test_a_proxy_search_trains_no_supernet_and_chooses_by_the_proxy(tmp_path, monkeypatch):
    cfg = make_cfg("search", *PROXY, "search.final_top=3", "search.final_samples=2",
                   "search.proxy.final_seeds=[1]")
    search = Search(cfg, tmp_path / "peek")
    frozen = {k: v.clone() for k, v in search.supernet.state_dict().items()}
    summary = run_job("search", cfg, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(frozen[k], v) for k, v in state["supernet"].items())  # untouched
    epochs = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "epoch"]
    assert len(epochs) == 2 and "loss" not in epochs[0]
    pareto = json.loads((tmp_path / "run" / "pareto.json").read_text())["cells"]
    scores = state["proxy_scores"]["scores"]
    assert len(pareto) == len(scores) == summary["cells_scored"]
    finals = [c for c in pareto if "final_psnr" in c]
    assert len(finals) == 3
    for c in finals:  # the final candidates ran seed 1 too; their final PSNR is the mean
        runs = next(v for k, v in scores if k == c["genotype"])
        assert set(runs) == {"0", "1"}  # the final candidates ran seed 1 too, on the final crops
        assert c["final_psnr"] == pytest.approx((runs["0"]["final"] + runs["1"]["final"]) / 2)
        assert c["psnr"] == runs["0"]["reward"]
    chosen = [c for c in pareto if c.get("chosen")]
    assert chosen[0]["final_psnr"] == max(c["final_psnr"] for c in finals)
    assert summary["val_psnr"] == chosen[0]["final_psnr"]


def test_a_killed_proxy_search_resumes_to_the_same_cells_without_training_any_again(
        tmp_path, monkeypatch):
    cfg = make_cfg("search", *PROXY, "search.epochs=3", "search.warmup=0")
    real = proxy_mod.proxy_score
    trained: dict[str, list] = {"full": [], "killed": [], "resumed": []}
    run = "full"

    def recorded(genotype, *args):
        if run == "killed" and len(trained["killed"]) == 24:  # in epoch 3
            raise KeyboardInterrupt
        trained[run].append((genotype, args[4]))  # (cell, seed)
        return real(genotype, *args)

    monkeypatch.setattr(proxy_mod, "proxy_score", recorded)
    run_job("search", cfg, tmp_path / "full")
    run = "killed"
    with pytest.raises(KeyboardInterrupt):
        run_job("search", cfg, tmp_path / "killed")
    saved = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    kept = {(Genotype.from_dict({"nodes": cell}), int(seed))
            for cell, runs in saved["proxy_scores"]["scores"] for seed in runs}
    run = "resumed"
    resumed = run_job("search", make_cfg("search", f"resume={tmp_path / 'killed'}"))
    assert kept and not kept & set(trained["resumed"])  # nothing the checkpoint held is rerun
    assert kept | set(trained["resumed"]) == set(trained["full"])  # nor anything missed
    full = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert resumed["genotype"] == full["genotype"] and resumed["val_psnr"] == full["val_psnr"]
    steps = {name: [r for r in read_metrics(tmp_path / name) if r["kind"] == "controller"]
             for name in ("full", "killed")}
    assert [r["controller_step"] for r in steps["killed"]] == list(range(1, 31))
    assert [r["genotype"] for r in steps["killed"]] == [r["genotype"] for r in steps["full"]]


def test_a_finished_search_reselects_its_final_candidates_by_proxy_training(smoke_search,
                                                                           tmp_path, cli):
    shutil.copytree(smoke_search, tmp_path / "run")
    first = json.loads((tmp_path / "run" / "summary.json").read_text())
    supernet = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["supernet"]
    assert cli("search", f"resume={tmp_path / 'run'}", "search.final_proxy=true",
               *PROXY[1:], "search.final_top=3") is None
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["controller_steps"] == first["controller_steps"]  # nothing searched again
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(supernet[k], v) for k, v in state["supernet"].items())
    scores = state["proxy_scores"]["scores"]
    assert len(scores) == 3  # only the final candidates were trained, once each (seed 0)
    finals = [c for c in json.loads((tmp_path / "run" / "pareto.json").read_text())["cells"]
              if "final_psnr" in c]
    by_cell = {json.dumps(k): v["0"]["final"] for k, v in scores}
    for c in finals:
        assert c["final_psnr"] == by_cell[json.dumps(c["genotype"])]
    chosen = max(finals, key=lambda c: c["final_psnr"] - c["penalty"])
    assert summary["genotype"]["nodes"] == chosen["genotype"]


@pytest.mark.parametrize("override, message", [
    ("search.reward=oracle", "search.reward='oracle': use shared or proxy"),
    ("search.proxy.seeds=[]", r"search.proxy.seeds=\[\]: give a list of at least 1"),
    ("search.proxy.final_seeds=[0]", r"final_seeds=\[0\]: a seed of search.proxy.seeds"),
    ("search.proxy.steps=0", "search.proxy.steps=0: must be a whole number >= 1"),
    ("search.proxy.patch_size=2", "search.proxy.patch_size=2: must be"),
])
def test_bad_proxy_options_are_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        check_options("search", make_cfg("search", "search.reward=proxy", override))


def test_rank_scores_each_cell_with_the_proxy_and_reuses_earlier_retrains(
        smoke_search, tmp_path, monkeypatch):
    base = [f"run={smoke_search}", "rank.cells=4", "rank.pool=16", "rank.policy_cells=0",
            f"rank.cells_dir={tmp_path / 'cells'}", f"rank.recipe={TINY_RECIPE}",
            "rank.bootstrap=50", "rank.retrain_seeds=[0,1]"]
    first = run_job("rank", make_cfg("rank", *base), tmp_path / "a")
    assert first["proxy"] is None

    def no_retrain(*args, **kwargs):
        raise AssertionError("a cell of the earlier rank.json was retrained")

    monkeypatch.setattr("nas_sr.jobs.rank.retrain_all", lambda jobs, *a: no_retrain()
                        if jobs else {})
    (tmp_path / "cells").rename(tmp_path / "gone")  # the earlier job's folders are gone
    overrides = [*PROXY[1:]]
    again = run_job("rank", make_cfg(
        "rank", *base, f"rank.retrained_from={tmp_path / 'a' / 'rank.json'}",
        "rank.proxy_seeds=[0,1]", f"rank.run_overrides={json.dumps(overrides)}"),
        tmp_path / "b")
    assert [c["retrained_psnrs"] for c in again["cells"]] == [
        c["retrained_psnrs"] for c in first["cells"]]
    assert again["early_stop_agreement"] is None  # its training logs went with the folders
    p = again["proxy"]
    assert p["setting"]["steps"] == 4 and p["seeds"] == [0, 1]
    proxy = [c["proxy_psnr"] for c in again["cells"]]
    retrained = [c["retrained_psnr"] for c in again["cells"]]
    assert p["kendall_tau"] == pytest.approx(stats.kendalltau(proxy, retrained).statistic)
    runs = [c["proxy_psnrs"] for c in again["cells"]]
    firsts, seconds = zip(*runs, strict=True)
    assert p["seed_agreement"]["kendall_tau"] == pytest.approx(
        stats.kendalltau(firsts, seconds).statistic)
    assert p["variance"] == variance_components(runs, 1, 50, 0)
    assert (tmp_path / "b" / "rank_proxy.png").is_file()
    assert p["runs_trained"] == 8  # 4 cells x 2 seeds, each kept as it was made
    monkeypatch.setattr(proxy_mod, "proxy_run", lambda *a, **k: no_retrain())
    kept = run_job("rank", make_cfg(
        "rank", *base, f"rank.retrained_from={tmp_path / 'a' / 'rank.json'}",
        "rank.proxy_seeds=[0,1]", f"rank.run_overrides={json.dumps(overrides)}"),
        tmp_path / "d")
    assert kept["proxy"]["runs_trained"] == 0 and [c["proxy_psnrs"] for c in kept["cells"]] == runs
    with pytest.raises(ConfigError, match="are not this job's"):
        run_job("rank", make_cfg("rank", *base[:-1], f"rank.retrained_from="
                                 f"{tmp_path / 'a' / 'rank.json'}"), tmp_path / "c")
