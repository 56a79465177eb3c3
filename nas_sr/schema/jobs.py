"""Each job's options: the sections it reads, on top of :class:`Common`; registered with
Hydra's ConfigStore as ``<job>_schema``, which each job's YAML names first in its defaults
(the YAML files hold only presets, groups and Hydra's own settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore

from nas_sr.schema.common import Common, Inference, Media
from nas_sr.schema.data import Data, Realistic
from nas_sr.schema.fields import opt, section
from nas_sr.schema.search import STRATEGIES, Evolution, Predictor, Search, Space
from nas_sr.schema.train import Train

BENCHMARKS = "../shared/datasets/benchmark"


@dataclass
class Sized(Common):
    """A job that ``preset=`` sizes: a preset sets a search's and its retrain's schedules
    together (search.*, train.*, data.*, controller.*), so each such job has them all."""

    scale: int = opt(2, "the upscaling factor: 2, 3 or 4")
    data: Data = section(Data, "the training images (data=builtin|folder|div2k)")
    search: Search = section(Search, "the search's schedule, reward and budget")
    train: Train = section(Train, "a standalone training's recipe (retrain)")
    controller: Any = opt(None, "the search strategy (controller=enas|random|evolution|"
                          "predictor)")
    genotype: Any = opt(None, "retrain: genotype.json (or summary.json) of a search run, or a "
                        "name of search_spaces/genotypes.py's GENOTYPES (searched_x2, "
                        "cell_x2); sets the cell's nodes")


@dataclass
class SearchJob(Sized):
    space: Space = section(Space, "the cell space (space=enas|wide)")


@dataclass
class RetrainJob(Sized):
    model: str = opt("cell", "a key of archs: cell (needs genotype=) | srcnn | fsrcnn | espcn "
                     "| vdsr | edsr_baseline | msrn | smsrn")
    init_from: str | None = opt(None, "a retrain checkpoint whose tensors of matching name "
                                "and shape seed the model (x3/x4 from x2 weights)")


@dataclass
class Prune:
    criterion: str = opt("std", "std: |w| < k * std of its filter | magnitude: the smallest "
                         "|w| of all convs | channels: whole output channels (smallest L1)")
    k: float = opt(1.0, "std: the threshold, in standard deviations of the filter", above=0)
    amount: float = opt(0.5, "magnitude, channels: share of the remaining weights / "
                        "channels cut, in (0, 1)")


@dataclass
class Separable:
    fit: bool = opt(True, "start from the least-squares fit of the trained convs; false: "
                    "scratch")
    keep_ends: bool = opt(True, "the first and the last k x k conv stay dense (they face the "
                          "image)")


@dataclass
class CompressJob(RetrainJob):
    checkpoint: str | None = opt(None, "a retrain checkpoint, or an exported model.pt2 (e.g. "
                                 "nas_sr/models/cell_x2)")
    method: str = opt("prune", "prune | separable")
    rounds: int = opt(1, "prune -> fine-tune rounds; separable converts once", low=1,
                      whole=True)
    prune: Prune = section(Prune)
    separable: Separable = section(Separable)


@dataclass
class RankSettings:
    cells: int = opt(16, "uniform draws, at evenly spaced params quantiles of `pool` draws",
                     low=0, whole=True)
    pool: int = opt(512, "uniform draws the cells are picked from", low=1, whole=True)
    params_range: Any = opt(None, "[low, high]: draw only cells of that size "
                                           "(the run's width), e.g. a budget's band")
    latency_range: Any = opt(None, "[low, high] ms: draw only cells whose "
                                            "predicted latency lies in it")
    latency_threads: int = opt(2, "... at this many ONNX Runtime threads", low=1, whole=True)
    latency_lr: list[int] = opt([360, 640], "... on an LR input of this (height, width)")
    latency_table: str | None = opt(None, "a table file; null = the one nas-sr profile "
                                    "caches for this machine")
    cells_file: str | None = opt(None, "a JSON list of cells ([[in, op, in, op], ...] each) "
                                 "to rank instead of drawing them")
    policy_cells: int = opt(4, "draws of the run's final policy (a random run: more uniform "
                            "draws)", low=0, whole=True)
    run_overrides: list[str] = opt([], "applied to the run's config, e.g. "
                                   "[controller.op_tanh_reduce=1.0]")
    seed: int = opt(0, "fixes the uniform draws: every run ranked with it shares them",
                    low=0, whole=True)
    judge: str = opt("last", "a retrain's PSNR: its last epoch's validation (last) or its "
                     "best (best, biased upward)")
    retrain_seeds: list[int] = opt([0], "each cell retrained once per seed, its PSNR the "
                                   "mean; two or more measure the seeds' agreement")
    oracle_pool: int = opt(480, "with >= 2 seeds: the gain of a perfect pick of this many "
                           "cells over a random one", low=1, whole=True)
    retrained_from: str | None = opt(None, "an earlier rank.json whose cells keep their "
                                     "retrained PSNRs instead of being retrained")
    proxy_seeds: list[int] = opt([], "also score each cell with the run's search.proxy, once "
                                 "per seed")
    jobs: int = opt(2, "retrains side by side, one thread each", low=1, whole=True)
    cells_dir: str = opt("runs/rank/cells", "retrained cells, shared by every rank job")
    bootstrap: int = opt(2000, "resamples for the intervals", low=1, whole=True)
    recipe: list[str] = opt(["train.epochs=4", "train.iters_per_epoch=100",
                             "train.batch_size=16", "train.patch_size=64", "train.lr=1.0e-3",
                             "train.val_crops=64", "seed=0", "data.cache=h5"],
                            "the short fixed retraining recipe (overrides of retrain), "
                            "validated on the hold-out images")


@dataclass
class RankJob(Common):
    run: str | None = opt(None, "a finished search run folder (its config.yaml and "
                          "checkpoint.pt)")
    rank: RankSettings = section(RankSettings)


@dataclass
class EvaluateJob(Common, Inference):
    model: str = opt("bicubic", "a retrain checkpoint, an exported model.pt2, or bicubic")
    benchmark_root: str = opt(BENCHMARKS, "SET/X{scale}/{HR,LR}/ with matching names")
    sets: Any = opt(["Set5", "Set14"], "the benchmark sets scored (a list, or one name)")
    scale: int | None = opt(None, "null: the model's own (x2 for bicubic); a model of another "
                            "scale is refused")
    tile: int | None = opt(None, "LR tile size for large images; null = each image in one go")


@dataclass
class ExportJob(Common):
    checkpoint: str | None = opt(None, "a retrain checkpoint (required)")
    format: Any = opt(["pt2", "onnx"], "model.pt2 always (a list, or one name); onnx adds "
                      "model.onnx (checked against eager torch); int8 adds model.int8.onnx")
    output: str | None = opt(None, "folder for the artifact; null = this run's folder")
    card_notes: str | None = opt(None, "a markdown file appended to MODEL_CARD.md")


@dataclass
class UpscaleJob(Common, Media):
    model: str | None = opt(None, "a retrain checkpoint, an exported model.pt2, or bicubic "
                            "(needs scale=)")
    input: str | None = opt(None, "an image, a video (mp4 mov mkv avi webm), or a folder "
                            "(recursive)")
    output: str | None = opt(None, "folder for the outputs (same relative names); null = "
                             "RUN_DIR/images")
    overwrite: bool = opt(False, "replace files already in output=; false: refuse before any "
                          "work")
    scale: int | None = opt(None, "optional; a model of another scale is refused")


@dataclass
class PlotJob(Common):
    runs: Any = opt([], "search or retrain run folders, or saved curve_<run>.json; bare "
                          "arguments fill this")
    smooth: int = opt(20, "moving-average window (controller steps) of the smoothed reward",
                      low=1, whole=True)
    op_window: int | None = opt(None, "controller steps per window of the op-share plot; null "
                                "= one epoch", low=1)
    band: str = opt("minmax", "the overlay's spread over runs: minmax or std")
    overlay_dir: str | None = opt(None, "where the overlays go; null = this job's own run "
                                  "folder")


@dataclass
class Limits:
    upload_mb: float = opt(500, "bytes per upload, refused while it streams in", above=0)
    pixels: int = opt(8294400, "per image or video frame (3840 x 2160)", low=1, whole=True)
    frames: int = opt(9000, "per video (5 min at 30 fps)", low=1, whole=True)
    queued: int = opt(20, "jobs waiting to start; more uploads get 503 until one starts",
                      low=1, whole=True)
    stored_gb: float = opt(20, "uploads and results kept on disk; more uploads get 507",
                           above=0)


@dataclass
class ServeJob(Common, Media):
    model: str | None = opt("searched_x2", "offered first: a models_dir model's name, or a "
                            "model file; null = the first under models_dir")
    models_dir: str | None = opt(None, "every */model.pt2 below it is offered, plus "
                                 "bicubic; null = the models nas-sr ships")
    host: str = opt("127.0.0.1", "localhost only; 0.0.0.0 opens the page to the network")
    port: int = opt(8000, "the TCP port", low=1, high=65535, whole=True)
    allowed_hosts: Any = opt([], "more names the page answers to, e.g. [mybox.lan] "
                                   "(any other Host header is refused: DNS rebinding)")
    workers: int = opt(1, "jobs run at once (one keeps a CPU's cores for one job)", low=1,
                       whole=True)
    keep_minutes: float = opt(60, "a finished job's files are deleted this long after it ends",
                              above=0)
    store: str | None = opt("runs/serve/jobs", "the jobs' folders and records (jobs.sqlite): "
                            "a restart on the same store takes up its queue (required)")
    access_log: bool = opt(False, "uvicorn's per-request log (the page polls every second)")
    limits: Limits = section(Limits, "what one upload may hold, and the queue and disk")


@dataclass
class ProfileSettings:
    widths: list[int] = opt([16, 24, 32, 40, 48, 64], "C, the cell widths priced")
    lr_size: list[int] = opt([128, 128], "reference LR input (height, width); a prediction "
                             "scales by pixels")
    threads: list[int] | None = opt([1, 2], "ONNX Runtime intra-op threads; null = this "
                                    "machine's cores")
    scales: list[int] = opt([2, 3, 4], "the tails priced")
    nodes: Any = opt("${archs.cell.nodes}", "combines priced for 1..nodes loose ends")
    warmup: int = opt(3, "untimed runs of each part before the timed ones", low=0, whole=True)
    repeats: int = opt(10, "timed runs; an entry is their median", low=1, whole=True)
    clock: str = opt("wall", "wall: the time a user waits; cpu: the thread's CPU time (1 "
                     "thread only)")
    table: str | None = opt(None, "where the table goes; null = "
                            "~/.cache/nas-sr/latency/<cpu>-ort<v>.json")
    reuse: bool = opt(False, "validate the table already at `table` instead of remaking it, "
                      "timing only the parts it lacks (those added to the toolkit since)")
    validate: int = opt(0, "K random networks timed whole against the prediction (0: none)",
                        low=0, whole=True)
    validate_cells: list[int] = opt([1, 8], "[low, high] cells of the random networks")
    validate_lr: list[int] | None = opt(None, "[height, width] to validate at (null: lr_size, "
                                        "and the table is calibrated)")


@dataclass
class ProfileJob(Common):
    profile: ProfileSettings = section(ProfileSettings)


@dataclass
class DegradeJob(Common):
    benchmark_root: str = opt(BENCHMARKS, "SET/X{scale}/{HR,LR}/ with matching names")
    output: str | None = opt(None, "the new benchmark root (required); never benchmark_root "
                             "itself")
    sets: Any = opt(["Set5", "Set14"], "the benchmark sets degraded (a list, or one name)")
    scale: int = opt(2, "the LR images' factor")
    overwrite: bool = opt(False, "replace OUT/SET/X{scale} where it exists; false: refuse "
                          "before any work")
    degradation: Realistic = section(Realistic, "the degradation's ranges "
                                     "(data/realistic@degradation=test|default)")


@dataclass
class TableJob(Common):
    runs: Any = opt([], "trial-search run folders (search.trials.count=K) whose finished "
                    "trials become the table's rows, and table files (shards) joined to them; "
                    "bare arguments fill this")
    output: str | None = opt(None, "the table file to write (JSON lines; required)")
    latency_threads: list[int] = opt([], "thread counts each cell's latency is given at "
                                     "(predicted_ms_t{n}, measured_ms_t{n}); [] = none")
    latency_lr: list[int] = opt([360, 640], "(height, width) of the LR frame timed")
    latency_table: str | None = opt(None, "predict with this latency table; null = the one "
                                    "nas-sr profile cached for this machine, where it exists")
    measure: bool = opt(False, "also time each cell's network whole in ONNX Runtime here")
    sizes_as_macro: bool = opt(False, "join sources of different network sizes (C x N) as one "
                               "table whose rows carry their size as the macro decision "
                               "(space.macro), for replay over width against depth")


def _replay_evolution() -> Evolution:
    return Evolution(population=8, tournament=3)  # a population a K=16 search can fill


def _replay_predictor() -> Predictor:
    return Predictor(warmup=6, candidates=64, trees=16)


@dataclass
class ReplaySettings:
    table: str | None = opt(None, "a table file (nas-sr table; required)")
    budgets: list[int] = opt([16, 32, 64], "trials per search, K (each a table lookup)")
    seeds: int = opt(1000, "paired searches per strategy and K", low=2, whole=True)
    proxy_seeds: int = opt(2, "cells with this many proxy seeds take part; a trial "
                           "observes one of them at random", low=1, whole=True)
    final_top: int = opt(4, "best observed cells judged by every seed's final-crop PSNR",
                         low=1, whole=True)
    batch: int = opt(4, "trials told to the strategy at once", low=1, whole=True)
    cost: str | None = opt(None, "the cost `band` bounds: params | mult_adds | latency_ms | "
                           "predicted_ms_t{n} | measured_ms_t{n} (nas-sr table's columns)")
    band: list[float] | None = opt(None, "[low, high] of `cost`: the cells searched")
    strategies: list[str] = opt(["evolution", "predictor"], "strategies replayed against "
                                "random (random | evolution | predictor)")
    evolution: Evolution = field(default_factory=_replay_evolution,
                                 metadata={"help": "evolution's settings in replay"})
    predictor: Predictor = field(default_factory=_replay_predictor,
                                 metadata={"help": "the predictor's settings in replay"})


@dataclass
class ReplayJob(Common):
    replay: ReplaySettings = section(ReplaySettings, "strategies against an SR-NAS table")


SCHEMAS = {"search": SearchJob, "retrain": RetrainJob, "compress": CompressJob,
           "rank": RankJob, "evaluate": EvaluateJob, "export": ExportJob,
           "upscale": UpscaleJob, "plot": PlotJob, "serve": ServeJob, "profile": ProfileJob,
           "degrade": DegradeJob, "table": TableJob, "replay": ReplayJob}


def register() -> None:
    """Each job's schema and the strategy and degradation groups, in Hydra's ConfigStore."""
    store = ConfigStore.instance()
    for job, schema in SCHEMAS.items():
        store.store(name=f"{job}_schema", node=schema)
    for name, strategy in STRATEGIES.items():
        store.store(group="controller", name=name, node=strategy)
    store.store(group="data/realistic", name="default", node=Realistic)
