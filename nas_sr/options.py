"""A job's options checked before it reads any data, so a bad value costs nothing.

Each check names the option, its value and what would work, in one line.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import av
from omegaconf import DictConfig, OmegaConf

from nas_sr.archs.build import BASELINES, check_scale
from nas_sr.archs.lighten import CRITERIA, METHODS
from nas_sr.data.degradations import training_settings
from nas_sr.data.pairs import rescale_factors
from nas_sr.data.video import CONTAINERS
from nas_sr.deploy.predictor import RUNTIMES
from nas_sr.device import resolve_device
from nas_sr.errors import ConfigError
from nas_sr.runs.log import summary_writer
from nas_sr.schema import SCHEMAS, check_fields
from nas_sr.schema.train import retrain_form, retrain_width
from nas_sr.search.rank import JUDGES
from nas_sr.search.supernet import space_macros
from nas_sr.train.recipe import CLOCKS, LOSSES
from search_spaces.cost import cheapest_cost
from search_spaces.genotypes import GENOTYPES
from search_spaces.operations import OP_NAMES, REGISTRY

log = logging.getLogger(__name__)

# smallest tile for upscale/evaluate: each tile also computes ``overlap`` pixels of context on
# every side, so tile=1 with overlap=16 would do ~1000x the work of an untiled run
MIN_TILE = 16


def _number(cfg: DictConfig, key: str) -> Any:
    value = cfg
    for part in key.split("."):
        value = value[part]
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{key}={value!r}: must be a number")
    # a float option holds the 1 it was given as 1.0: named as given
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _at_least(cfg: DictConfig, key: str, low: int, whole: bool = True, optional: bool = False,
              why: str = "") -> None:
    value = _number(cfg, key)
    if value is None and optional:
        return
    if value is None or value < low or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{key}={value}: must be {kind} >= {low}{why}"
                          + (" (or null)" if optional else ""))


# options that take true, false or auto (bf16 where the device has it): typed Any, so a
# value such as no stays a string and is refused here (true/false options are typed bool)
AUTO_SWITCHES = ("amp", "train.amp", "search.amp")


def check_switches(cfg: DictConfig) -> None:
    """Every true/false/auto option ``cfg`` has is one of those."""
    absent = object()
    for key in AUTO_SWITCHES:
        value = OmegaConf.select(cfg, key, default=absent)
        if value is not absent and not isinstance(value, bool) and value != "auto":
            raise ConfigError(f"{key}={value!r}: use true, false or auto")


def check_patch(cfg: DictConfig, key: str, scale: int) -> None:
    """An HR crop side ``key`` that a x``scale`` model can train and validate on."""
    _at_least(cfg, key, 3 * scale, why=f" (3 x scale, so a crop outlives PSNR's shave of "
                                       f"{scale} pixels per border)")


def _tile(cfg: DictConfig) -> None:
    tile = _number(cfg, "tile")
    if tile not in (None, 0) and (tile < MIN_TILE or tile != int(tile)):
        raise ConfigError(f"tile={tile}: use a tile of at least {MIN_TILE} LR pixels, or "
                          "tile=null for whole images")


# the CRF scale of encoders that have one: FFmpeg clamps a value past it without a word
CRF_MAX = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "libvpx": 63, "libaom-av1": 63,
           "libsvtav1": 63}


def encoder_options(codec: str) -> tuple[list[str], list[str]] | None:
    """(``codec``'s own option names, FFmpeg's generic codec options); None where this
    FFmpeg has no such encoder (the video's own error names it)."""
    try:
        options = av.CodecContext.create(codec, "w").supported_options
    except ValueError:
        return None
    return [o.name for o in options.private], [o.name for o in options.generic]


# x264's and x265's speed presets (the one option FFmpeg takes as free text and fails on late)
X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow", "placebo")


def _video_format(cfg: DictConfig, codec: str) -> None:
    """``video.pix_fmt`` the encoder takes and ``video.preset`` one x264/x265 knows: else the
    encoder fails at its first frame with one error for either."""
    formats = [f.name for f in av.codec.Codec(codec, "w").video_formats or ()]
    if formats and cfg.video.pix_fmt not in formats:
        raise ConfigError(f"video.pix_fmt={cfg.video.pix_fmt!r}: {codec} takes "
                          f"{', '.join(formats[:8])}{', ...' if len(formats) > 8 else ''}")
    preset = cfg.video.get("preset")
    if codec in ("libx264", "libx265") and preset is not None and preset not in X26X_PRESETS:
        raise ConfigError(f"video.preset={preset!r}: {codec} takes {', '.join(X26X_PRESETS)}")


def _video(cfg: DictConfig) -> None:
    """``video.*`` of upscale and serve: FFmpeg ignores an option its encoder lacks, so a
    typo in ``+video.options.KEY`` would encode as if never given."""
    container = cfg.video.container
    if not isinstance(container, str) or f".{container.lstrip('.')}" not in CONTAINERS:
        raise ConfigError(f"video.container={container!r}: use one of "
                          f"{', '.join(c.lstrip('.') for c in CONTAINERS)}")
    codec, crf = cfg.video.codec, cfg.video.crf
    if crf is not None and crf > CRF_MAX.get(codec, crf):
        raise ConfigError(f"video.crf={crf}: {codec} takes 0-{CRF_MAX[codec]} (lower = better "
                          "and bigger)")
    known = encoder_options(str(codec))
    if known is None:
        return
    _video_format(cfg, str(codec))
    for key in cfg.video.options:
        if key not in known[0] + known[1]:
            raise ConfigError(f"video.options.{key}: {codec} has no such option; its own are "
                              f"{', '.join(known[0])} (FFmpeg's generic ones too, e.g. "
                              f"{', '.join(known[1][:4])})")


def _controller(cfg: DictConfig) -> None:
    """``controller.*`` of a search: values the policy would run with that mean nothing."""
    has = cfg.controller.keys()  # each value's own bounds: nas_sr/schema/search.py
    if "tournament" in has and cfg.controller.tournament > cfg.controller.population:
        raise ConfigError(f"controller.tournament={cfg.controller.tournament}: at most "
                          f"controller.population={cfg.controller.population}")


def _compress(cfg: DictConfig) -> None:
    if cfg.method not in METHODS:
        raise ConfigError(f"method={cfg.method!r}: use one of {', '.join(METHODS)}")
    if cfg.method == "separable":
        if cfg.rounds != 1:
            raise ConfigError(f"rounds={cfg.rounds}: method=separable converts once; rounds=1")
        return
    if cfg.prune.criterion not in CRITERIA:
        raise ConfigError(f"prune.criterion={cfg.prune.criterion!r}: use one of "
                          f"{', '.join(CRITERIA)}")
    if cfg.prune.criterion == "std":
        return
    amount = _number(cfg, "prune.amount")
    if amount is None or not 0 < amount < 1:
        raise ConfigError(f"prune.amount={amount}: must be a share between 0 and 1, both "
                          "excluded")


def _space(cfg: DictConfig) -> None:
    """``space.ops``: registered ops, each once (the controller draws op indices into it)."""
    ops = cfg.space.ops
    if isinstance(ops, str) or not ops or len(set(ops)) != len(ops):
        raise ConfigError(f"space.ops={ops}: give a list of distinct ops, e.g. "
                          f"[{', '.join(OP_NAMES)}]")
    unknown = [op for op in ops if op not in REGISTRY]
    if unknown:
        raise ConfigError(f"space.ops: unknown op(s) {unknown}; the registered ones are "
                          f"{', '.join(REGISTRY)}")
    _macro(cfg)


def _macro(cfg: DictConfig) -> None:
    """``space.macro``: distinct [channels, cells] pairs, searched by a trial strategy (a
    supernet's shared weights have one width)."""
    macro = OmegaConf.to_container(cfg.space.get("macro") or OmegaConf.create([]))
    widths = OmegaConf.to_container(cfg.space.get("macro_widths") or OmegaConf.create([]))
    if not macro and not widths:
        return
    if not isinstance(macro, list) or not all(
            isinstance(m, list) and len(m) == 2 and all(map(_whole, m))
            for m in macro) or len({tuple(m) for m in macro}) != len(macro):
        raise ConfigError(f"space.macro={macro}: give distinct [channels, cells] pairs of "
                          "whole numbers >= 1, e.g. [[16,10],[32,4],[48,2]]")
    if not isinstance(widths, list) or not all(map(_whole, widths)) \
            or len(set(widths)) != len(widths):
        raise ConfigError(f"space.macro_widths={widths}: give distinct channel counts, whole "
                          "numbers >= 1, e.g. [16,32,48,64]")
    t = cfg.search.get("trials")
    if not (t and t.count) or cfg.controller.name not in ("random", "evolution", "predictor"):
        raise ConfigError("space.macro and macro_widths search the network's size on the "
                          "trial engine: set search.trials.count=K and controller=random, "
                          "evolution or predictor (a supernet's shared weights have one "
                          "width)")
    proxy = cfg.search.proxy
    if proxy.channels or proxy.cells:  # the proxy trains each network at its own size
        raise ConfigError("search.proxy.channels/cells: a space.macro search trains each "
                          "proxy at its network's searched size; leave them null "
                          "(search.proxy.channels=null search.proxy.cells=null)")


def _whole(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def _budget_reachable(cfg: DictConfig) -> None:
    """A budget below every network the space holds would train the whole search, then
    find no cell to choose. With ``space.macro`` the searched sizes count, not the retrain
    width."""
    if cfg.space.get("macro_widths"):
        return  # each width gets a depth the budget reaches, or is refused (search.sizes)
    b, form, macros = cfg.search.budget, retrain_form(cfg), space_macros(cfg)
    sizes = macros or (retrain_width(cfg),)
    least = {m: cheapest_cost(cfg.archs.cell.nodes, *m, cfg.scale, **form) for m in sizes}
    limits = {k: b[k] for k in ("params", "mult_adds") if b[k]}
    if limits and not any(all(v >= least[m][k] for k, v in limits.items()) for m in sizes):
        lower = ("add a smaller size to space.macro" if macros
                 else "lower the retrain width train.cell.channels/cells")
        failing = [k for k, v in limits.items() if v < min(least[m][k] for m in sizes)]
        if not failing:  # each limit alone is reachable, at other sizes
            raise ConfigError(f"search.budget {limits}: no size of space.macro meets both "
                              f"limits at once; raise one or {lower}")
        key = failing[0]
        size = min(sizes, key=lambda m: least[m][key])
        raise ConfigError(
            f"search.budget.{key}={limits[key]}: below the cheapest network the space builds, "
            f"{least[size][key]:,} at {size[0]} channels x {size[1]} cells, x{cfg.scale} "
            f"(head, tail and upsampler around cells of identities); raise it or {lower}")


def _retrain_model(cfg: DictConfig) -> None:
    """``genotype=`` builds ``model=cell``, which needs one (``init_from=`` a compressed
    model brings its own arch: ``nas_sr.jobs.retrain``). A baseline leaves it unused, as
    ``preset=compare`` does on purpose, so that is said, not refused."""
    if cfg.model != "cell" and cfg.genotype:
        log.warning("genotype=%s is not used: model=%s is a baseline (model=cell trains a "
                    "genotype)", cfg.genotype, cfg.model)
    if cfg.model == "cell" and not cfg.genotype and not cfg.init_from:
        raise ConfigError("model=cell needs genotype=PATH (the genotype.json of a search run) "
                          f"or a named genotype ({', '.join(GENOTYPES)}); or train a baseline "
                          f"with model={'|'.join(BASELINES)}")


def _proxy(cfg: DictConfig) -> None:
    """``search.reward`` and, for a proxy reward, its training setting."""
    reward = cfg.search.get("reward", "shared")  # a run saved before proxies: shared
    trials = OmegaConf.select(cfg, "search.trials.count")
    if reward == "shared" and not cfg.search.get("final_proxy", False) and not trials:
        return
    check_patch(cfg, "search.proxy.patch_size", cfg.scale)
    seeds = _seeds(cfg, "search.proxy.seeds", least=1)
    final = _seeds(cfg, "search.proxy.final_seeds")
    if set(seeds) & set(final):
        raise ConfigError(f"search.proxy.final_seeds={final}: a seed of search.proxy.seeds "
                          f"{seeds} again would score the same run twice")


def _trials(cfg: DictConfig) -> None:
    """``search.trials``: the engine's options mean something only with a trial count."""
    t = cfg.search.get("trials")
    if t is None:  # a run saved before the engine
        return
    if not t.count and (t.workers > 1 or t.join or t.storage):
        raise ConfigError("search.trials.workers, join and storage run trials: set "
                          "search.trials.count=K (the cells the search pays for)")
    if t.grace_s <= t.heartbeat_s:
        raise ConfigError(f"search.trials.grace_s={t.grace_s}: longer than heartbeat_s="
                          f"{t.heartbeat_s}, or every running trial looks killed")


def _seeds(cfg: DictConfig, key: str, least: int = 0) -> list[int]:
    """A list of at least ``least`` distinct whole-number seeds at ``key``."""
    value = OmegaConf.select(cfg, key)
    seeds = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if (seeds is None or len(seeds) < least or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                       for s in seeds)):
        raise ConfigError(f"{key}={value}: give a list of at least {least} distinct "
                          "whole-number seeds >= 0, e.g. [0, 1]")
    return seeds


def export_formats(cfg: DictConfig) -> list[str]:
    """``format=`` as a list (``onnx`` and ``[pt2, onnx]`` both work); pt2 is always written."""
    chosen = [cfg.format] if isinstance(cfg.format, str) else list(cfg.format)
    if unknown := set(chosen) - {"pt2", "onnx", "int8"}:
        raise ConfigError(f"format={cfg.format}: unknown {sorted(unknown)}; use pt2, onnx "
                          "and/or int8")
    if "int8" in chosen and "onnx" not in chosen:
        raise ConfigError(f"format={cfg.format}: int8 quantizes model.onnx; add onnx")
    return chosen


def check_options(job: str, cfg: DictConfig) -> None:
    """Raise ConfigError for the first option of ``job`` that cannot work."""
    check_fields(cfg, SCHEMAS[job])  # each field's own bounds, declared beside it
    check_switches(cfg)
    if OmegaConf.select(cfg, "logger.tensorboard"):
        summary_writer()  # the optional extra, named before any data is read
    if job in ("search", "retrain", "evaluate", "upscale", "export", "serve", "compress"):
        resolve_device(cfg.device)
    if job in ("search", "retrain") or (job in ("evaluate", "upscale")
                                        and cfg.scale is not None):
        check_scale(cfg.scale)
    if job == "search":
        _space(cfg)
        _budget_reachable(cfg)
        _proxy(cfg)
        _trials(cfg)
        _controller(cfg)
        check_patch(cfg, "data.patch_size", cfg.scale)
    if job in ("retrain", "compress"):  # compress fine-tunes each round with retrain's recipe
        if job == "retrain":  # compress: 0 = no fine-tuning
            _at_least(cfg, "train.epochs", 1)
        if cfg.train.clock not in CLOCKS:
            raise ConfigError(f"train.clock={cfg.train.clock!r}: use wall or cpu")
        if cfg.train.minutes and cfg.train.schedule != "cosine":
            raise ConfigError(f"train.minutes works with train.schedule=cosine (it follows "
                              f"the time spent), not {cfg.train.schedule}")
        ema = _number(cfg, "train.ema")
        if ema is None or not 0 <= ema < 1:
            raise ConfigError(f"train.ema={ema}: a decay in [0, 1) (0.999 is usual; 0 = off)")
        if cfg.train.loss not in LOSSES:
            raise ConfigError(f"train.loss={cfg.train.loss!r}: use {' or '.join(LOSSES)}")
        luma = _number(cfg, "train.luma")
        if luma is None or not 0 <= luma <= 1:
            raise ConfigError(f"train.luma={luma}: the loss's share on the Y channel, in [0, 1]")
        teach = _number(cfg, "train.teacher_weight")
        if teach is None or not 0 < teach <= 1:
            raise ConfigError(f"train.teacher_weight={teach}: the teacher's share of the "
                              "target, in (0, 1]")
    if job == "retrain":  # compress: against its model's scale, once the model is read
        check_patch(cfg, "train.patch_size", cfg.scale)
    if job in ("search", "retrain", "compress"):
        rescale_factors(cfg.data)  # before any image is read
        _degradation(cfg, job)
    if job == "compress":
        _compress(cfg)
    if job == "rank":
        if cfg.rank.judge not in JUDGES:
            raise ConfigError(f"rank.judge={cfg.rank.judge!r}: use {' or '.join(JUDGES)}")
        _seeds(cfg, "rank.proxy_seeds")
        for key, unit in (("rank.params_range", "params"), ("rank.latency_range", "ms")):
            band = OmegaConf.select(cfg, key)
            if band is not None and (len(band) != 2 or not 0 <= band[0] <= band[1]):
                raise ConfigError(f"{key}={list(band)}: give [low, high] {unit}, "
                                  "0 <= low <= high")
        lr = cfg.rank.latency_lr
        if len(lr) != 2 or min(lr) < 1:
            raise ConfigError(f"rank.latency_lr={list(lr)}: give [height, width] in pixels")
    if job in ("evaluate", "upscale", "serve"):
        _tile(cfg)
        if cfg.runtime not in RUNTIMES:
            raise ConfigError(f"runtime={cfg.runtime!r}: use one of {', '.join(RUNTIMES)}")
        if cfg.amp is True and cfg.runtime == "onnx":
            raise ConfigError("amp=true is torch's bf16 autocast and runtime=onnx runs fp32 "
                              "ONNX Runtime; drop one (runtime=auto with amp=true runs torch)")
    if job == "export":
        export_formats(cfg)
    if job in ("upscale", "serve"):
        _video(cfg)
    if job == "retrain" and not cfg.resume:  # a resumed run trains what it began with
        _retrain_model(cfg)
    if job in ("export", "compress"):
        if not cfg.checkpoint:
            raise ConfigError(f"checkpoint= is required: nas-sr {job} "
                              "checkpoint=runs/retrain/.../best.pt")
        if cfg.checkpoint == "bicubic":
            raise ConfigError(f"checkpoint=bicubic: bicubic has no weights to {job}; pass "
                              "checkpoint=runs/retrain/.../best.pt or a model.pt2")


def _degradation(cfg: DictConfig, job: str) -> None:
    """``data.degradation`` and ``data.realistic``: trained on by retrain and compress only."""
    if training_settings(cfg.data) is None:
        return
    if job == "search":
        raise ConfigError("data.degradation=realistic: the search scores cells on bicubic "
                          "pairs; retrain the cell it finds with data.degradation=realistic")
    if OmegaConf.select(cfg, "train.teacher"):
        raise ConfigError("train.teacher with data.degradation=realistic: the teacher's "
                          "targets come from bicubic LR images; use one or the other")
