"""``nas-sr <job> [Hydra overrides]``: one console script, one Hydra config per job."""

from __future__ import annotations

import difflib
import importlib
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import hydra
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from nas_sr import __version__, checkpoint
from nas_sr.data.images import ImageError
from nas_sr.data.video import VideoError
from nas_sr.errors import ConfigError, TrainingDiverged
from nas_sr.options import check_options
from nas_sr.runs import folder as runfolder
from nas_sr.schema import describe
from search_spaces.genotypes import GenotypeError

USER_ERRORS = (ConfigError, ImageError, VideoError, GenotypeError, TrainingDiverged,
               FileNotFoundError)

# job name (the module ``nas_sr.jobs.<name>`` with ``run(cfg, run_dir)``) -> one-line help
JOBS = {
    "search": "ENAS-style cell search on HR images (writes genotype.json)",
    "retrain": "train a found cell (genotype=PATH or NAME) or a baseline (model=...)",
    "evaluate": "PSNR/SSIM on Y, params and Mult-Adds on benchmark sets",
    "export": "a standalone artifact that loads with torch alone",
    "upscale": "super-resolve images (tiled) and videos (frame by frame)",
    "compress": "prune or make separable a trained model, then fine-tune",
    "plot": "reward curves and the best cell of search runs (RUN_DIR ...)",
    "rank": "Kendall tau of a search's reward vs retrained PSNR (run=DIR)",
    "serve": "a local web page to upscale photos and videos (FastAPI)",
    "profile": "this CPU's ONNX Runtime latency table of the cell's ops (profile.validate=K)",
    "degrade": "a blurred, noisy, JPEG-compressed copy of benchmark sets (output=DIR)",
    "table": "trial searches' cells as an SR-NAS table (RUN_DIR ... output=FILE)",
    "replay": "strategies against random search on an SR-NAS table (replay.table=FILE)",
}
RESUMABLE = ("search", "retrain")
# jobs whose bare (non key=value) arguments become a list override
POSITIONAL = {"plot": "runs", "table": "runs"}

# jobs that write only where output= says: run in a scratch folder when it is given
NAMED_OUTPUT = ("upscale",)
USAGE = """usage: nas-sr <job> [key=value ...] [--help] [--cfg job]
       nas-sr --version

jobs:
{jobs}

Each job is a Hydra app: `nas-sr <job> --help` lists its config groups and
every option with a line on what it does, `nas-sr <job> --cfg job` prints the
composed config. Examples:
  nas-sr search preset=smoke
  nas-sr search data=folder data.train_dir=../shared/datasets/train preset=cpu
  nas-sr search resume=runs/search/2026-01-01_12-00-00
"""


# what a run trains (its model, scale, start and data split) and the space its decisions
# index (a trial stores its op and size as positions in space.ops and space.macro): fixed
# once it has begun
FIXED_ON_RESUME = ("scale", "model", "genotype", "init_from", "seed", "archs", "controller",
                   "train.cell", "space")


def resumed_config(run_dir: Path, overrides: list[str], command: DictConfig | None = None
                   ) -> DictConfig:
    """A resumed run keeps its saved config; plain ``key=value`` overrides still apply.

    Options added to nas-sr since the run started take their value from ``command``'s
    config (today's defaults and the overrides), so an older run still resumes. Only a
    job's own sections count: ``data``/``controller`` come from a config group, and the
    command's group (data=builtin by default) need not be the run's.
    """
    saved = OmegaConf.load(run_dir / "config.yaml")
    missing = object()
    if command is not None:
        for key, value in _flat(OmegaConf.to_container(command)).items():
            key = key.rstrip(".")
            if (key.split(".")[0] not in ("data", "controller", "hydra") and "." in key
                    and OmegaConf.select(saved, key, default=missing) is missing
                    and OmegaConf.is_dict(_nearest(saved, key))):  # a new section too
                OmegaConf.update(saved, key, value)
    for item in overrides:
        key, _, value = item.partition("=")
        if key.startswith("++"):  # an existing key (check_added_keys): a plain override
            key, item = key[2:], item[2:]
        if key in ("resume", "hydra.run.dir") or key.startswith(("+", "~", "hydra.")):
            continue
        if any(key == fixed or key.startswith(f"{fixed}.") for fixed in FIXED_ON_RESUME):
            raise ConfigError(f"resume: {item!r} would change what the run trains, which its "
                              f"checkpoint holds; start a new run for it")
        current = OmegaConf.select(saved, key, default=missing)
        # a preset or data group would rebuild the run under it: refuse rather than ignore
        # (a list, such as search.proxy.final_seeds, is a plain setting)
        if current is missing or OmegaConf.is_dict(current):
            raise ConfigError(f"resume: {item!r} cannot change a resumed run (only plain "
                              f"settings of its config.yaml can, e.g. train.epochs=N)")
        OmegaConf.update(saved, key, OmegaConf.from_dotlist([f"v={value}"]).v)
    saved.resume = str(run_dir)
    return saved


def _nearest(cfg: DictConfig, key: str) -> object:
    """The value of ``key``'s nearest enclosing section that ``cfg`` has (None: none)."""
    parent = key.rpartition(".")[0]
    while parent and OmegaConf.select(cfg, parent, default=None) is None:
        parent = parent.rpartition(".")[0]
    return OmegaConf.select(cfg, parent, default=None) if parent else None


def _flat(node: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    return {k: v for key, sub in node.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}


def check_run_folder(run_dir: Path, cfg: DictConfig) -> None:
    """A folder with another run's checkpoints is not silently continued under a new config.

    The same command again (a killed sweep re-run) continues it; anything else must say
    ``resume=`` (which keeps the saved config) or pick a new folder. A model size that a
    later nas-sr added to ``archs`` (e.g. msrn) is none the saved run trains, so it is no
    difference: the same command still continues a run made before it.
    """
    saved = run_dir / "config.yaml"
    if not saved.is_file() or not any(run_dir.glob("*.pt")):
        return
    old_cfg = OmegaConf.to_container(OmegaConf.load(saved))
    new_cfg = OmegaConf.to_container(cfg, resolve=True)
    if isinstance(old_cfg.get("archs"), dict) and isinstance(new_cfg.get("archs"), dict):
        new_cfg["archs"] = {k: v for k, v in new_cfg["archs"].items() if k in old_cfg["archs"]}
    old, new = _flat(old_cfg), _flat(new_cfg)
    changed = sorted(k.rstrip(".") for k in old.keys() | new.keys()
                     if old.get(k) != new.get(k) and k != "resume.")  # a resume saves its dir
    if changed:
        raise ConfigError(
            f"{run_dir} holds a run with another config ({', '.join(changed[:4])}"
            f"{', ...' if len(changed) > 4 else ''} differ); continue it with "
            f"resume={run_dir} or start in a new hydra.run.dir")


# sections a config leaves open: ``+video.options.tune=film`` adds an encoder option there
OPEN_SECTIONS = ("video.options",)


def check_added_keys(job: str, cfg: DictConfig, overrides: list[str],
                     base: DictConfig | None = None) -> None:
    """A ``+key=value`` override adds ``key`` to the config, and no job reads a key its
    config does not have: a typo (``+search.epoch=5``) would run as if never given.

    ``base`` is the config without the ``+`` overrides, needed only for ``++key``, which
    also sets an existing key (``+key`` is refused by Hydra where the key exists).
    """
    for item in overrides:
        key = item.partition("=")[0]
        plain = key.lstrip("+")
        if (not key.startswith("+") or plain.startswith("hydra.")
                or any(plain.startswith(f"{open_}.") for open_ in OPEN_SECTIONS)):
            continue
        missing = object()
        if (key.startswith("++") and base is not None
                and OmegaConf.select(base, plain, default=missing) is not missing):
            continue  # ++ over an existing key: a plain override
        known = [k.rstrip(".") for k in _flat(OmegaConf.to_container(base or cfg))]
        known = [k for k in known if k != plain and not k.startswith(f"{plain}.")]
        near = difflib.get_close_matches(plain, known, n=1, cutoff=0.8)
        hint = f" (did you mean {near[0]}?)" if near else ""
        raise ConfigError(f"{item!r}: {job}'s config has no {plain}{hint}, so nothing would "
                          f"read it; a leading + only adds keys under "
                          f"{', '.join(OPEN_SECTIONS)}")


# options merged into another or moved: a command written for the old one is told where
WIDTH = "the one retrain width that the budget prices, the proxy trains and retrain builds"
MOVED = {"search.budget.channels": ("train.cell.channels", WIDTH),
         "search.budget.cells": ("train.cell.cells", WIDTH),
         "data.val_crops": ("search.reward_crops", "the search's reward crops (train.val_crops "
                            "is retrain's validation)"),
         "data.final_crops": ("search.final_crops", "the search's final-choice crops")}


def unknown_key_error(job: str, overrides: list[str]) -> str | None:
    """A ``key=value`` whose key ``job``'s config lacks, with the nearest real option
    (Hydra's own hint, ``+key=``, adds a key no job reads), or whose value is not of the
    option's type; None where every override fits."""
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        try:
            compose(job, overrides=overrides)
            return None
        except ConfigCompositionException as e:
            if isinstance(e.__cause__, ValidationError) and e.__cause__.full_key:
                key = e.__cause__.full_key
                item = next((o for o in overrides if o.partition("=")[0] == key), key)
                return f"{item}: {str(e.__cause__.msg).splitlines()[0]}"
            if not isinstance(e.__cause__, (ConfigAttributeError, ConfigKeyError)):
                return None  # Hydra's own message names what else is wrong
            key = e.__cause__.full_key
        except HydraException:  # a malformed override: Hydra's own message says where
            return None
        item = next((o for o in overrides if o.partition("=")[0] == key), key)
        if key in MOVED:
            return f"{item!r}: {key} is now {MOVED[key][0]}, {MOVED[key][1]}"
        try:  # the options this command has (data=folder brings data.train_dir)
            cfg = compose(job, overrides=[o for o in overrides if o != item])
        except HydraException:
            cfg = compose(job)
    known = [k.rstrip(".") for k in _flat(OmegaConf.to_container(cfg))]
    leaf = key.rpartition(".")[2]
    near = (difflib.get_close_matches(key, known, n=1)
            or [k for k in known if k.rpartition(".")[2] == leaf][:1])
    hint = f"; did you mean {near[0]}?" if near else ""
    return (f"{item!r}: {job}'s config has no {key}{hint} (`nas-sr {job} --help` lists "
            "every option)")


def job_help(job: str, overrides: list[str]) -> str:
    """``nas-sr JOB --help``: the job, its config groups, and every option with its value in
    this command's config and its one-line description."""
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        cfg = compose(job, overrides=overrides)
        runtime = compose(job, overrides=overrides, return_hydra_config=True).hydra.runtime
        loader = GlobalHydra.instance().config_loader()
        # the groups this job's defaults list names (data, preset, data/realistic@...)
        options = {g: loader.get_group_options(g.partition("@")[0])
                   for g in runtime.choices if not g.startswith("hydra/")}
        groups = [f"  {g}={'|'.join(names)}" for g, names in options.items() if names]
    return "\n".join([f"usage: nas-sr {job} [group=option ...] [key=value ...]",
                      f"{JOBS[job]}", "", "config groups:", *(groups or ["  (none)"]), "",
                      "options (key=value in this command, then what it does):",
                      *describe(cfg), "",
                      f"`nas-sr {job} --cfg job` prints the whole config as YAML."])


def unwritable_run_dir(job: str, overrides: list[str]) -> str | None:
    """Why the run folder Hydra would make (``hydra.run.dir=``, else one under
    ``runs/JOB``) cannot be written, if it cannot: Hydra's own failure is a traceback."""
    if any(o.startswith("-") for o in overrides):  # --cfg, --help, -m: no run folder
        return None
    run_dir = next((o.partition("=")[2] for o in overrides if o.startswith("hydra.run.dir=")),
                   f"runs/{job}")
    try:
        checkpoint.check_writable(run_dir)
    except checkpoint.WriteFailed as e:
        return f"hydra.run.dir: {e}"
    return None


def _base_config(job: str, overrides: list[str]) -> DictConfig | None:
    """The config ``overrides`` compose without their ``++`` ones (None: none to drop);
    Hydra is initialised (inside the running app, or by :func:`print_resumed_config`)."""
    if not any(o.startswith("++") for o in overrides):
        return None
    return compose(job, overrides=[o for o in overrides if not o.startswith("+")])


def print_resumed_config(job: str, resume: str, overrides: list[str]) -> None:
    """``--cfg job`` with ``resume=``: the config the resume would run with, not the
    defaults Hydra would compose (nothing is written into the run folder)."""
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        cfg = compose(job, overrides=overrides)
        check_added_keys(job, cfg, overrides, _base_config(job, overrides))
    run_dir = resume_folder(resume)
    check_resumable(job, run_dir)
    print(OmegaConf.to_yaml(resumed_config(run_dir, overrides, cfg)), end="")


def _task_overrides() -> list[str]:
    try:
        return list(HydraConfig.get().overrides.task)
    except ValueError:  # composed outside a Hydra app (tests)
        return []


def resume_folder(resume: str) -> Path:
    """The run folder ``resume=`` names, checked before anything is written into it: a
    folder without a run's ``config.yaml`` (a data folder, say) is left as it was."""
    run_dir = Path(resume).expanduser().resolve()
    if not run_dir.is_dir():
        raise FileNotFoundError(f"resume={resume}: no such run folder")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"resume={resume}: not a run folder (no config.yaml in it); "
                                f"resume= names the folder a search or retrain wrote")
    return run_dir


def check_resumable(job: str, run_dir: Path) -> None:
    """``resume=`` names a run folder of this job."""
    if job not in RESUMABLE:
        raise ConfigError(f"resume= continues {' or '.join(RESUMABLE)} runs; {job} has "
                          f"nothing to continue, run it again")
    made_by = runfolder.job_of(run_dir, runfolder.CHECKPOINTS)
    if made_by and made_by != job:
        raise ConfigError(f"resume={run_dir} is a {made_by} run; continue it with "
                          f"`nas-sr {made_by} resume={run_dir}`")


def run_job(job: str, cfg: DictConfig, run_dir: Path | None = None) -> object:
    """Resolve the run folder and config, own the folder, save the config, run ``job``.

    Everything a command can get wrong is checked here, before the job reads any data.
    """
    overrides = _task_overrides()
    check_added_keys(job, cfg, overrides, _base_config(job, overrides))
    resume = bool(cfg.get("resume"))
    if resume:
        run_dir = resume_folder(cfg.resume)
    else:
        run_dir = run_dir or Path(HydraConfig.get().runtime.output_dir)
    with runfolder.owned(run_dir):
        if resume:
            check_resumable(job, run_dir)
        runfolder.append_history(run_dir, job, overrides, resume)
        if resume:
            cfg = resumed_config(run_dir, overrides, cfg)
        else:
            check_run_folder(run_dir, cfg)
        check_options(job, cfg)
        module = importlib.import_module(f"nas_sr.jobs.{job}")
        if not resume and hasattr(module, "settle"):  # what the job decides before it runs
            module.settle(cfg)
        # under torchrun every process composes the same config; the one that owns the
        # folder cleans it (another's temp file may be live) and writes the config
        if runfolder.is_main_process():  # after a resume: the effective config
            checkpoint.remove_stale_temps(run_dir)
            with checkpoint.atomic_path(run_dir / "config.yaml") as tmp:  # resume needs it
                OmegaConf.save(cfg, tmp, resolve=True)
        return module.run(cfg, run_dir)


def _quoted(value: str) -> str:
    """A Hydra override's quoted string: commas, brackets and spaces stay in the value."""
    return "'" + value.replace("'", "\\'") + "'"


# Hydra's flags that take a value (``--cfg job``), unlike ``--resolve`` or ``-m``
VALUE_FLAGS = ("--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name",
               "-cn", "--config-dir", "-cd", "--experimental-rerun")


def _before_flags(overrides: list[str], item: str) -> list[str]:
    """``overrides`` with ``item`` before the first flag: argparse takes no override after
    ``--cfg job`` or ``--help``."""
    at = next((i for i, o in enumerate(overrides) if o.startswith("-")), len(overrides))
    return [*overrides[:at], item, *overrides[at:]]


def _without_flags(overrides: list[str]) -> list[str]:
    """``overrides`` less each flag and, for Hydra's flags that take one, its value
    (``--cfg job``; ``--resolve`` and ``-m`` take none)."""
    flags = [i for i, o in enumerate(overrides) if o.startswith("-")]
    taken = {*flags, *(i + 1 for i in flags if overrides[i] in VALUE_FLAGS)}
    return [o for i, o in enumerate(overrides) if i not in taken]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(jobs="\n".join(f"  {k:<8} {v}" for k, v in JOBS.items())))
        return
    if argv[0] in ("-V", "--version"):
        print(f"nas-sr {__version__}")
        return
    job, overrides = argv[0], argv[1:]
    if job not in JOBS:
        sys.exit(f"nas-sr: unknown job {job!r}; jobs: {', '.join(JOBS)}")
    # bare arguments: neither key=value nor a flag nor the value of a flag (--cfg job); an
    # existing path is bare even with a "=" in it (a sweep's run folder: controller=enas,seed=0)
    bare = [o for i, o in enumerate(overrides)
            if not o.startswith("-") and not (i and overrides[i - 1].startswith("-"))
            and ("=" not in o or (job in POSITIONAL and Path(o).exists()))]
    if bare:
        if job not in POSITIONAL:
            sys.exit(f"nas-sr {job}: expected key=value overrides, got {bare[0]!r}")
        overrides = _before_flags([o for o in overrides if o not in bare],
                                  f"{POSITIONAL[job]}=[{','.join(map(_quoted, bare))}]")
    flags = [i for i, o in enumerate(overrides) if o.startswith("-")]
    settings = _without_flags(overrides)
    if error := unknown_key_error(job, settings):
        sys.exit(f"nas-sr {job}: error: {error}")
    if any(o in ("--help", "-h") for o in overrides):
        print(job_help(job, settings))
        return
    # a resumed run writes into its own folder, not a new dated one
    resume = next((o.split("=", 1)[1] for o in overrides if o.startswith("resume=")), None)
    if resume and any(overrides[i:i + 2] in (["--cfg", "job"], ["-c", "job"]) for i in flags):
        try:
            print_resumed_config(job, resume, settings)
        except (*USER_ERRORS, HydraException) as e:
            sys.exit(f"nas-sr {job}: error: {e}")
        return
    if resume and not any(o.startswith("hydra.run.dir=") for o in overrides):
        try:  # before Hydra writes its log there
            resume_folder(resume)
        except FileNotFoundError as e:
            sys.exit(f"nas-sr {job}: error: {e}")
        overrides = _before_flags(overrides, f"hydra.run.dir={resume}")
    scratch = None
    if (job in NAMED_OUTPUT and any(o.startswith("output=") and o != "output=null"
                                    for o in settings)
            and not any(o.startswith("hydra.run.dir=") for o in overrides)):
        # its files go where output= names: no dated run folder left behind for nothing
        scratch = Path(tempfile.mkdtemp(prefix=f"nas-sr-{job}-"))
        overrides = _before_flags(overrides, f"hydra.run.dir={scratch}")
    if error := unwritable_run_dir(job, overrides):
        sys.exit(f"nas-sr {job}: error: {error}")

    @hydra.main(version_base="1.3", config_path="pkg://experiments", config_name=job)
    def app(cfg: DictConfig) -> None:
        run_or_exit(job, cfg)

    sys.argv = [f"nas-sr {job}", *overrides]
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    finally:
        signal.signal(signal.SIGTERM, previous)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def run_or_exit(job: str, cfg: DictConfig) -> None:
    """:func:`run_job`, its user's errors and interruptions as one line and an exit."""
    try:
        run_job(job, cfg)
    except USER_ERRORS as e:  # a message that says what to fix, not a traceback
        sys.exit(f"nas-sr {job}: error: {e}")
    except OSError as e:  # a write outside the atomic helpers (a log's append) on a full disk
        if e.errno not in checkpoint.REMEDIES:
            raise
        sys.exit(f"nas-sr {job}: error: {e.filename or 'a file'}: {e.strerror} "
                 f"({checkpoint.REMEDIES[e.errno]})")
    except KeyboardInterrupt as e:  # every cleanup has run on the way up
        if runfolder.is_main_process():  # one line, not one per torchrun worker
            print(stopped_message(job, e), file=sys.stderr)
        # the shell's own status for a process a signal ended: 128 + its number
        sys.exit(128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT))


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, a scheduler, torchrun), raised as Ctrl+C is: the partial file a
    write was making is removed and the run folder's lock let go, not left behind."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def stopped_message(job: str, e: KeyboardInterrupt) -> str:
    """One line for an interrupted job, and how a search or retrain goes on."""
    how = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if job in runfolder.CHECKPOINTS and (run_dir / runfolder.CHECKPOINTS[job]).is_file():
        return f"nas-sr {job}: {how}; continue from the last checkpoint with resume={run_dir}"
    return f"nas-sr {job}: {how}"


if __name__ == "__main__":
    main()
