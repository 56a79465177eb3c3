"""A search's options: the shared weights' schedule, the reward, the budget, the cell space
and each strategy (``controller=enas|random|evolution|predictor``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controllers.predictor import ACQUISITIONS
from nas_sr.schema.fields import opt, section
from search_spaces.cell import SHARING
from search_spaces.cost import BUDGET_MODES


@dataclass
class Proxy:
    """The proxy's training setting (nas_sr/search/proxy.py): half the compare's retrain
    recipe, Kendall tau 0.60 a seed against retraining; ~80 s a cell on one core."""

    channels: int | None = opt(None, "the proxy network's width; null = the retrain width "
                               "(train.cell, else archs.cell)", low=1, whole=True)
    cells: int | None = opt(None, "the proxy network's cells; null = the retrain depth",
                            low=1, whole=True)
    steps: int = opt(400, "training steps of each cell", low=1, whole=True)
    batch_size: int = opt(16, "crops per step", low=1, whole=True)
    patch_size: int = opt(64, "HR crop side", whole=True)
    lr: float = opt(1.0e-3, "Adam, cosine to 0 over the steps", above=0)
    seeds: list[int] = opt([0], "one run per seed (initial weights); a cell's PSNR is their "
                           "mean")
    final_seeds: list[int] = opt([], "more runs for the final_top candidates before the "
                                 "choice")


@dataclass
class Supernet:
    share: str = opt("slot", "slot: one op module per (node, input slot); input: per (node, "
                     "input state), as ENAS and HNAS-SR index them", choices=SHARING)
    norm: bool = opt(False, "BatchNorm(affine=False) in batch statistics after each op, in "
                     "the supernet only (HNAS-SR): a node's scale does not depend on the path")


@dataclass
class Budget:
    """Costs of the standalone network at the retrain width (train.cell, else archs.cell)."""

    params: int | None = opt(None, "e.g. 400000; null = no limit", above=0)
    mult_adds: int | None = opt(None, "for one 1280x720 output; null = no limit", above=0)
    latency_ms: float | None = opt(None, "ms for one latency_lr frame at latency_threads ONNX "
                                   "Runtime threads, predicted by this machine's latency "
                                   "table (nas-sr profile); null = no limit", above=0)
    latency_threads: int = opt(2, "ONNX Runtime threads the latency is priced at", low=1,
                               whole=True)
    latency_lr: list[int] = opt([360, 640], "(height, width) of the LR frame priced: "
                                "640x360, 1280x720 at x2")
    latency_table: str | None = opt(None, "a table file; null = the one nas-sr profile "
                                    "caches for this machine")
    beta: float = opt(1.0, "over budget, the reward loses 10*beta*log10(cost/budget) dB",
                      above=0)
    mode: str = opt("max", "max: only cells over budget pay; target: TuNAS's absolute "
                    "reward, so cells under budget pay too", choices=BUDGET_MODES)
    reject: bool = opt(True, "a proposal over budget (or under floor x budget) is drawn again "
                       "before it is scored: no reward is paid for it")
    floor: float = opt(0.0, "with reject: the band's low end as a share of each budget "
                       "(0.9: cells of 90-100% of it)", low=0, high=1)


@dataclass
class Trials:
    """The proxy search as trials of an Optuna study (nas_sr/search/trials.py): workers share
    its storage, each takes the strategy's next proposal when free."""

    count: int | None = opt(None, "proxy-trained cells the search pays for; null = the "
                            "epoch loop (shared weights, or search.reward=proxy in epochs)",
                            low=1, whole=True)
    workers: int = opt(1, "worker processes started here (each with `threads` torch "
                       "threads, or an equal share of the cores)", low=1, whole=True)
    storage: str | None = opt(None, "the study's database URL; null = sqlite in the run "
                              "folder (a cluster: a PostgreSQL or MySQL URL every worker "
                              "reaches)")
    join: bool = opt(False, "only work on the study at `storage` (one more worker, e.g. a "
                     "SLURM array task), then exit: no choice, no outputs")
    heartbeat_s: int = opt(10, "a running trial's heartbeat period", low=1, whole=True)
    grace_s: int = opt(30, "a trial without a heartbeat this long was killed: it is run "
                       "again", low=1, whole=True)
    retries: int = opt(1, "times a killed trial is run again", low=0, whole=True)


@dataclass
class Search:
    epochs: int = opt(10, "shared-weight phases, each followed by a controller phase",
                      low=1, whole=True)
    batches_per_epoch: int = opt(40, "shared-weight steps per epoch", low=1, whole=True)
    batch_size: int = opt(16, "crops per shared-weight step", low=1, whole=True)
    lr: float = opt(1.0e-3, "Adam on the shared weights, cosine-decayed to lr_min", above=0)
    lr_min: float = opt(1.0e-4, "the cosine's end", low=0)
    grad_clip: float = opt(5.0, "max gradient norm of the shared weights", above=0)
    amp: Any = opt(False, "bf16 autocast of the shared weights' training forward: true | "
                   "false | auto; rewards are scored in fp32 either way")
    warmup: float = opt(0.25, "share of the epochs before the policy acts (fair children, "
                        "uniform scored cells, no update)", low=0, high=1)
    sampler: str = opt("fair", "children of the shared weights not drawn from the policy: "
                       "fair | uniform", choices=("fair", "uniform"))
    policy_mix: float = opt(0.0, "after warm-up: share of training children drawn from the "
                            "policy (a share biases the shared weights toward its cells)",
                            low=0, high=1)
    reward_crops: int = opt(32, "fixed crops of the search's validation images: the reward "
                            "batch every scored cell is judged on", low=1, whole=True)
    final_crops: int = opt(128, "fixed crops of the same images scored when choosing the "
                           "final cell", low=1, whole=True)
    final_top: int = opt(16, "best re-scored cells within budget scored again on "
                         "search.final_crops", low=1, whole=True)
    final_samples: int = opt(16, "extra draws of the final policy (and its greedy cell)",
                             low=0, whole=True)
    reward: str = opt("shared", "shared: PSNR through the supernet's weights; proxy: each "
                      "cell trained briefly on its own (search.proxy), no supernet",
                      choices=("shared", "proxy"))
    final_proxy: bool = opt(False, "score the final_top candidates by proxy training on the "
                            "final crops instead of through the shared weights")
    proxy: Proxy = section(Proxy, "the proxy's training setting")
    supernet: Supernet = section(Supernet, "how the shared weights are shared")
    budget: Budget = section(Budget, "costs of the standalone network at the retrain width")
    trials: Trials = section(Trials, "the proxy search on a shared Optuna study")


@dataclass
class Space:
    name: str = opt("enas", "the cell space: enas (Ahn and Cho's) | wide (more kernels, "
                    "dilations and attention ops)")
    ops: list[str] = opt(["conv_3x3", "sep_conv_3x3", "dil_conv_3x3", "identity"],
                         "the ops a node chooses among, in the controller's decision order")
    macro: list[list[int]] = opt([], "[channels, cells] choices of the network, searched with "
                                 "the cell (width against depth; a trial search's "
                                 "random, evolution or predictor strategy); [] = the retrain "
                                 "width")
    macro_widths: list[int] = opt([], "channels whose number of cells the budget picks (the "
                                  "depth whose uniform cells' median cost lies nearest the "
                                  "band), joined to space.macro when the search starts")


@dataclass
class Strategy:
    """What every search strategy has: the schedule of its phase, and its baseline."""

    name: str = opt("random", "the strategy: enas | random | evolution | predictor")
    steps_per_epoch: int = opt(40, "cells scored per controller phase", low=1, whole=True)
    samples_per_update: int = opt(5, "rewards per policy step (ENAS aggregates 10)", low=1,
                                  whole=True)
    rebase: bool = opt(False, "restart the baseline after each shared-weight phase (reward "
                       "drift)")
    baseline_decay: float = opt(0.95, "the reward baseline's moving-average decay", low=0,
                                below=1)


@dataclass
class Enas(Strategy):
    """Ahn and Cho's LSTM policy trained by REINFORCE with an EMA baseline."""

    name: str = opt("enas", "the strategy")
    rebase: bool = opt(True, "restart the baseline after each shared-weight phase (reward "
                       "drift)")
    hidden: int = opt(64, "LSTM hidden size", low=1, whole=True)
    layers: int = opt(2, "LSTM layers", low=1, whole=True)
    temperature: float | None = opt(5.0, "softmax temperature of the logits; null = none",
                                    above=0)
    tanh_constant: float | None = opt(2.5, "input logits within +-tanh_constant; null = "
                                      "none", above=0)
    op_tanh_reduce: float = opt(2.5, "op logits within +-tanh_constant/op_tanh_reduce",
                                above=0)
    normalize_advantage: bool = opt(True, "advantages / their running RMS: unit scale "
                                    "whatever the reward")
    entropy_weight: float = opt(5.0e-3, "entropy bonus, relative to unit-scale advantages",
                                low=0)
    lr: float = opt(3.5e-3, "Adam on the policy", above=0)


@dataclass
class Random(Strategy):
    """Uniform sampling: same interface and budget, no learning."""


@dataclass
class Evolution(Strategy):
    """Regularized evolution (Real, Aggarwal, Huang and Le 2019): mutate the best of a random
    tournament; the oldest member leaves."""

    name: str = opt("evolution", "the strategy")
    population: int = opt(20, "members alive at once", low=1, whole=True)
    tournament: int = opt(5, "members drawn per tournament (at most population)", low=1,
                          whole=True)


@dataclass
class Predictor(Strategy):
    """A random forest over cell features, Thompson sampling (or UCB) among in-band
    uniform candidates."""

    name: str = opt("predictor", "the strategy")
    candidates: int = opt(256, "uniform in-band cells the acquisition chooses among", low=1,
                          whole=True)
    warmup: int = opt(10, "uniform proposals before the model is trusted", low=0, whole=True)
    acquisition: str = opt("thompson", "thompson (one tree at random) | ucb (mean + kappa * "
                           "std over trees)", choices=ACQUISITIONS)
    kappa: float = opt(1.0, "ucb's weight of the trees' std", low=0)
    trees: int = opt(32, "trees of the forest", low=1, whole=True)
    seed: int = opt(0, "the forest's and the acquisition's seed", low=0, whole=True)


STRATEGIES = {"enas": Enas, "random": Random, "evolution": Evolution, "predictor": Predictor}
