"""Training a standalone model in a run folder: the loop, its checkpoints and validation.

The habits of EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image
Super-Resolution"): L1 loss (or MSE, for a last fine-tune: PSNR is an MSE), Adam, a
decaying learning rate, random crops with flips and 90-degree rotations, validation
PSNR (Y, ``scale`` pixels shaved, 8-bit outputs) every epoch, the best checkpoint
kept. ``last.pt`` holds the whole training state, so a killed run resumes where its
last epoch ended. With ``train.ema`` the weights' moving average is what is validated and
kept as ``model`` (``best.pt``, export, ``init_from=``); ``last.pt`` adds the trained
weights as ``train_model``. The retrain job trains once; compress fine-tunes each round
with it.

Under ``torchrun`` it trains data-parallel (DDP): ``train.batch_size`` is the
global batch, split evenly over the processes by striding the crop indices, so
K processes take the same steps as one (up to float summation order).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from nas_sr import checkpoint
from nas_sr.archs.build import build_model, shape_mismatch
from nas_sr.archs.luma import colors, rgb_to_luma
from nas_sr.data.cache import cache_path, open_store
from nas_sr.data.crops import RandomCrops, fixed_crops, min_image_size
from nas_sr.data.degradations import training_crops, validation_pairs
from nas_sr.data.images import to_tensor
from nas_sr.data.pairs import ImageSource, PairStore, load_pairs, rescale_factors
from nas_sr.data.sources import resolve_sources
from nas_sr.deploy.pt2 import read_model_file
from nas_sr.device import memory_format, seed_everything, set_threads, use_amp
from nas_sr.errors import ConfigError
from nas_sr.metrics import Pairs, crop_psnrs, rgb_to_y
from nas_sr.progress import epoch_line, progress_bar
from nas_sr.train import distributed
from nas_sr.train.distributed import Dist
from nas_sr.train.ema import WeightAverage
from nas_sr.train.recipe import CLOCKS, LOSSES, BlowUpGuard, cosine_lr, not_finite
from nas_sr.train.state import RunState
from nas_sr.train.teacher import BlendedTargets, teacher_store
from search_spaces.cell import upgrade_state_dict
from search_spaces.network import count_params

BEST, LAST = "best.pt", "last.pt"
VAL_BATCH = 32  # validation crops per forward pass

Arch = dict[str, Any]


def init_from(model: nn.Module, path: str | Path, arch: Arch | None = None) -> list[str]:
    """Copy every tensor of checkpoint or ``model.pt2`` ``path`` whose name and shape fit
    ``model`` (built from ``arch``, which names a size mismatch when nothing fits).

    An x3/x4 model started from x2 weights takes all but the upsampler. Returns the
    names of the tensors left as initialised.
    """
    state = read_model_file(path)
    source = state.get("model") if isinstance(state, dict) else None
    if not isinstance(source, dict):
        raise ConfigError(f"{path}: not a nas-sr model checkpoint (no 'model'); "
                         "init_from= takes a best.pt or last.pt of retrain, or a model.pt2")
    own, source = model.state_dict(), upgrade_state_dict(source)  # old cells' names too
    fits = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not fits:
        source_arch = state.get("arch") if isinstance(state.get("arch"), dict) else {}
        why = shape_mismatch(source_arch, arch) if arch else ""
        raise ConfigError(f"{path}: none of its tensors fits this model ("
                          f"{why or 'it was trained as ' + str(source_arch.get('name', '?'))})")
    model.load_state_dict(fits, strict=False)
    return sorted(set(own) - set(fits))


def lr_factor(train: DictConfig, epoch: int, train_s: float = 0.0) -> float:
    """Multiplier of ``train.lr`` in ``epoch``: cosine down to ``lr_min``, or steps of ``gamma``.

    Under a time budget (``train.minutes``) the cosine follows the share of it spent
    (``train_s`` seconds), so models of any speed decay fully within the same minutes.
    """
    if train.schedule == "cosine":
        spent, budget = (train_s, 60 * train.minutes) if train.minutes else (epoch, train.epochs)
        done = min(1.0, spent / budget) if budget else 1.0  # compress may ask for 0 epochs
        return cosine_lr(1.0, train.lr_min / train.lr, done, 1)
    if train.schedule == "step":
        return train.gamma ** (epoch // train.step_epochs)
    raise ConfigError(f"train.schedule={train.schedule!r}; use cosine or step")


def warmup_factor(warmup_steps: int, step: int) -> float:
    """Multiplier of the scheduled learning rate at a run's ``step`` (1-based)."""
    return min(1.0, step / warmup_steps) if warmup_steps else 1.0


def clip_gradients(params: list[nn.Parameter], train: DictConfig, learning_rate: float) -> None:
    """Norm clipping at ``grad_clip``, or VDSR's adjustable clipping: each gradient
    component within +-grad_clip / lr, so the step bound stays fixed as the lr decays."""
    if not train.grad_clip:
        return
    if train.adjustable_clip:
        nn.utils.clip_grad_value_(params, train.grad_clip / learning_rate)
    else:
        nn.utils.clip_grad_norm_(params, train.grad_clip)


def load_data(cfg: DictConfig, d: Dist, device: torch.device | str = "cpu"
              ) -> tuple[RandomCrops, list[Pairs]]:
    """The training crops (with ``train.reward_images``, the search's reward images too;
    with ``train.teacher``, towards targets blended with its outputs), and this process's
    share of the validation sets."""
    data, t, scale = cfg.data, cfg.train, cfg.scale
    src = resolve_sources(data, scale)
    train = src.train + src.reward if t.reward_images else src.train
    split = "train_reward" if t.reward_images else "train"
    progress, rescale = cfg.logger.progress and d.is_main, rescale_factors(data)
    with distributed.main_first(d):  # one process builds the caches, the others read them
        store = open_store(train, scale, min_image_size(data, t.patch_size, scale),
                           cache_path(data, scale, split), "training images", progress,
                           rescale)
        if t.teacher:
            taught = teacher_store(store, train, rescale, t.teacher, scale, data.cache_dir,
                                   device, progress)
            store = BlendedTargets(store, taught, t.teacher_weight)
    crops = training_crops(store, data, scale, t.patch_size, t.iters_per_epoch * t.batch_size,
                           cfg.seed)
    return crops, validation_sets(cfg, d, src.holdout)


def validation_sets(cfg: DictConfig, d: Dist,
                    holdout: list[ImageSource] | None = None) -> list[Pairs]:
    """This process's share of the hold-out images (never the search's reward images):
    ``train.val_crops`` fixed crops as one set, or each whole image as a set of one. They
    are few: decoded in memory."""
    t, scale = cfg.train, cfg.scale
    if holdout is None:
        holdout = resolve_sources(cfg.data, scale).holdout
    progress = cfg.logger.progress and d.is_main
    if t.val_crops:
        pairs = load_pairs(holdout, scale, min_image_size(cfg.data, t.patch_size, scale),
                           "validation images", progress)
        pairs = validation_pairs(pairs, cfg.data, scale)  # degraded as training is
        lq, gt = fixed_crops(PairStore(pairs), scale, t.patch_size, t.val_crops, seed=1)
        return [(lq[d.rank::d.world_size], gt[d.rank::d.world_size])]
    pairs = load_pairs(holdout[d.rank::d.world_size], scale, 1, "validation images", progress)
    pairs = validation_pairs(pairs, cfg.data, scale, range(len(holdout))[d.rank::d.world_size])
    return [(to_tensor(lq)[None], to_tensor(gt)[None]) for gt, lq in pairs]


def training_loss(name: str, luma: float = 0.0
                  ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``train.loss`` on RGB, with a share ``luma`` of it on the Y channel instead: the
    benchmarks score Y alone, so a capacity-bound model can spend less on colour."""
    fn = getattr(F, LOSSES[name])
    if not luma:
        return fn

    def loss(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        # on 0..1 input rgb_to_y gives 16 + 0..219/255: the 16 cancels in the difference
        on_y = fn(rgb_to_y(sr), rgb_to_y(gt))
        return on_y if luma == 1 else luma * on_y + (1 - luma) * fn(sr, gt)

    return loss


def validate(model: nn.Module, sets: list[Pairs], scale: int, d: Dist,
             fmt: torch.memory_format = torch.contiguous_format) -> float:
    """Mean Y-PSNR (8-bit outputs, ``scale`` pixels shaved) over all processes' sets."""
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for lq, gt in sets:
        psnrs = crop_psnrs(model, (lq.to(device, memory_format=fmt), gt.to(device)), scale,
                           VAL_BATCH)
        total += float(psnrs.sum())
        count += len(psnrs)
    sums = distributed.all_sum(d, torch.tensor([total, count], dtype=torch.float64,
                                               device=device))
    return float(sums[0] / sums[1])


class Trainer(RunState):
    """All the state of one training run; ``state_dict`` is exactly what ``last.pt`` holds."""

    job, checkpoint_file, section = "retrain", LAST, "train"

    def __init__(self, cfg: DictConfig, run_dir: Path, d: Dist, device: torch.device,
                 resume: dict[str, Any] | None, new_arch: Callable[[], Arch]):
        super().__init__(run_dir)
        self.cfg, self.dist, self.device = cfg, d, device
        t = cfg.train
        if t.batch_size % d.world_size:
            raise ConfigError(f"train.batch_size={t.batch_size} does not split evenly over "
                             f"{d.world_size} processes; use a multiple of {d.world_size}")
        # a resumed run rebuilds the model it trained, whatever became of the genotype file
        self.arch = resume["arch"] if resume else new_arch()
        seed_everything(cfg.seed)
        self.fmt = memory_format(cfg.get("channels_last", True))
        self.model = build_model(self.arch).to(device, memory_format=self.fmt)
        self.init_skipped = (init_from(self.model, cfg.init_from, self.arch)
                             if cfg.init_from and resume is None else None)
        self.ema = WeightAverage(self.model, t.ema) if t.ema else None
        self.net: nn.Module = self.model
        self.amp = use_amp(t.amp, device)
        # a Y-only network trains on the crops' Y (its chroma is bicubic, out of its reach),
        # so no step converts colours or upscales chroma it would not learn from
        self.on_y = colors(self.arch) == 1
        self.loss_fn = training_loss(t.loss, 0.0 if self.on_y else t.luma)
        if d.enabled:
            # no BN anywhere: the only buffer is a constant (the RGB mean), nothing to sync (and
            # broadcasting it fails on its channels_last strides). torch 2.13 deprecates the
            # switch but has no replacement that skips the sync at init yet, so it stays.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated",
                                        FutureWarning)
                self.net = DistributedDataParallel(
                    self.model, device_ids=[device] if device.type == "cuda" else None,
                    broadcast_buffers=False)
        if t.compile:
            self.net = torch.compile(self.net)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=t.lr)
        self.best_epoch, self.train_s, self.steps = 0, 0.0, 0
        self.clock = CLOCKS[t.clock]  # what train.minutes is counted in
        self.blow_up = BlowUpGuard()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda epoch: lr_factor(self.cfg.train, epoch, self.train_s))
        self.val_psnr = self.best_psnr = -math.inf
        self.crops, self.val_sets = load_data(cfg, d, device)
        self.sampler = DistributedSampler(self.crops, d.world_size, d.rank, shuffle=False)
        if resume:
            self.load_state_dict(resume)

    # --- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            # the validated weights are the model; with EMA the trained ones ride along
            "model": (self.ema or self.model).state_dict(),
            **({"train_model": self.model.state_dict()} if self.ema else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "params": count_params(self.model),
            "val_psnr": self.val_psnr,
            "best_psnr": self.best_psnr,
            "best_epoch": self.best_epoch,
            "train_s": self.train_s,
            "steps": self.steps,
            **self.run_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        trained = state.get("train_model", state["model"])
        self.model.load_state_dict(trained)
        if self.ema:  # train.ema turned on at a resume starts from the trained weights
            self.ema.load_state_dict(state["model"] if "train_model" in state else trained)
        # checkpoints from before train.minutes counted validation in with training
        self.train_s = state.get("train_s", state["elapsed"])
        # checkpoints from before train.minutes could end an epoch early ran whole epochs
        self.steps = state.get("steps", state["epoch"] * self.cfg.train.iters_per_epoch)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # the schedule follows the config, so a resume may lower train.lr (after a divergence)
        lr = self.cfg.train.lr
        self.scheduler.base_lrs = [lr] * len(self.optimizer.param_groups)
        for group in self.optimizer.param_groups:
            group["initial_lr"] = lr
            group["lr"] = lr * lr_factor(self.cfg.train, state["epoch"], self.train_s)
        self.load_run_state(state)
        self.val_psnr, self.best_psnr, self.best_epoch = (
            state["val_psnr"], state["best_psnr"], state["best_epoch"])

    # --- one epoch ----------------------------------------------------------------------
    def train_epoch(self) -> dict[str, float]:
        t, d = self.cfg.train, self.dist
        self.crops.set_epoch(self.epoch)
        loader = DataLoader(self.crops, batch_size=t.batch_size // d.world_size,
                            sampler=self.sampler, num_workers=self.cfg.data.num_workers,
                            pin_memory=self.device.type == "cuda")
        learning_rate = self.optimizer.param_groups[0]["lr"]
        start = self.clock()
        self.net.train()
        total, steps, now = 0.0, 0, self.train_s
        budget = 60 * t.minutes if t.minutes else math.inf
        bar = progress_bar(loader, desc=f"epoch {self.epoch + 1}/{self.planned()}", leave=False,
                           disable=not (self.cfg.logger.progress and d.is_main))
        for step, (lq, gt) in enumerate(bar, 1):
            lq = lq.to(self.device, non_blocking=True, memory_format=self.fmt)
            gt = gt.to(self.device, non_blocking=True)
            if self.on_y:
                lq, gt = rgb_to_luma(lq), rgb_to_luma(gt)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp):
                sr = self.net(lq)
            loss = self.loss_fn(sr.float(), gt)
            # every process checks the mean loss, so all of them stop together
            value = distributed.all_sum(d, loss.detach().clone()).item() / d.world_size
            self.stop_if(self.blow_up(value), "the training loss", f", step {step}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lr_now = learning_rate * warmup_factor(t.warmup_steps, self.steps + step)
            for group in self.optimizer.param_groups:  # the epoch's scheduler step resets it
                group["lr"] = lr_now
            clip_gradients(list(self.model.parameters()), t, lr_now)
            self.optimizer.step()
            if self.ema:
                self.ema.update(self.model, self.steps + step)
            total += value
            steps += 1
            bar.set_postfix(loss=f"{value:.4f}")
            now = self.seconds_trained(start)
            if now >= budget:  # mid-epoch: every model gets the same minutes, not more
                break
        self.train_s = now  # before the step: the schedule reads it
        self.steps += steps
        self.scheduler.step()
        return {"loss": total / steps, "lr": learning_rate, "steps": self.steps}

    def seconds_trained(self, epoch_start: float) -> float:
        """Training time so far by ``train.clock``. Under ``train.minutes`` it is the mean
        over the processes, so that all of them see the budget run out at the same step."""
        seconds = self.train_s + self.clock() - epoch_start
        if not self.cfg.train.minutes:
            return seconds
        mean = distributed.all_sum(self.dist, torch.tensor(seconds, dtype=torch.float64))
        return mean.item() / self.dist.world_size

    def planned(self) -> str:
        """The epoch budget as a progress label: ``300``, or ``4.2/15 min``."""
        t = self.cfg.train
        return f"{self.train_s / 60:.1f}/{t.minutes:g} min" if t.minutes else str(t.epochs)

    def left_s(self) -> float:
        """Seconds the rest of the budget takes at this run's pace (validation included)."""
        t = self.cfg.train
        if not t.minutes:
            return self.eta_s(t.epochs)
        return max(60 * t.minutes - self.train_s, 0) * self.elapsed / max(self.train_s, 1e-9)

    def done(self) -> bool:
        """The budget is spent: ``train.minutes`` of training time, else ``train.epochs``."""
        t = self.cfg.train
        return self.train_s >= 60 * t.minutes if t.minutes else self.epoch >= t.epochs

    def validate(self, trained: bool = False) -> float:
        """Validation PSNR of the kept weights (the average under ``train.ema``), or of the
        weights the optimizer steps."""
        model = self.ema.model if self.ema and not trained else self.model
        return validate(model, self.val_sets, self.cfg.scale, self.dist, self.fmt)

    def end_epoch(self, val_psnr: float, seconds: float) -> bool:
        """Count the epoch; True when it is the best so far."""
        self.count_epoch(seconds)
        self.val_psnr = val_psnr
        improved = val_psnr > self.best_psnr
        if improved:
            self.best_psnr, self.best_epoch = val_psnr, self.epoch
        return improved


def train(cfg: DictConfig, run_dir: Path, new_arch: Callable[[], Arch]) -> dict[str, Any]:
    """Train (or resume) in ``run_dir``; every process returns the summary rank 0 writes.

    ``new_arch()`` is the arch spec of a fresh run; a resumed run rebuilds the model its
    ``last.pt`` holds.
    """
    d, device = distributed.setup(cfg.device)
    try:
        summary = _train(cfg, run_dir, d, device, new_arch)
    except BaseException:
        distributed.teardown(d, ok=False)
        raise
    distributed.teardown(d)
    return summary


def _train(cfg: DictConfig, run_dir: Path, d: Dist, device: torch.device,
           new_arch: Callable[[], Arch]) -> dict[str, Any]:
    set_threads(cfg.threads)
    distributed.check_same(d, str(run_dir.resolve()),
                           "pass the same hydra.run.dir=DIR (or resume=DIR) to every process")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its kernels
    last = run_dir / LAST
    resume = checkpoint.load(last) if last.is_file() else None
    trainer = Trainer(cfg, run_dir, d, device, resume, new_arch)
    t, name, params = cfg.train, trainer.arch["name"], count_params(trainer.model)
    log = trainer.open_log(cfg, resume is not None) if d.is_main else None
    try:
        untrained = None if resume else trainer.validate()  # every process takes part
        if log and resume:
            print(f"resuming {run_dir} after epoch {trainer.epoch} ({trainer.planned()})")
        elif log:
            log.log("start", model=name, arch=trainer.arch, params=params,
                    device=str(device), world_size=d.world_size, val_psnr=untrained,
                    init_from=cfg.init_from, init_skipped=trainer.init_skipped)
            print(f"{name} x{cfg.scale}: {params:,} params on {d.world_size} x {device}; "
                  f"untrained val PSNR {untrained:.2f} dB")
        while not trainer.done():
            t0 = time.perf_counter()
            stats = trainer.train_epoch()
            t1 = time.perf_counter()
            val_psnr = trainer.validate()
            # the epoch's last steps may have broken the weights
            trainer.stop_if(not_finite(val_psnr), "the validation PSNR")
            # what the average buys, measured in the same run
            both = {"val_psnr_trained": trainer.validate(trained=True)} if trainer.ema else {}
            t2 = time.perf_counter()
            improved = trainer.end_epoch(val_psnr, t2 - t0)
            if log:
                log.log("epoch", epoch=trainer.epoch, **stats, val_psnr=val_psnr, **both,
                        best_psnr=trainer.best_psnr, train_time_s=t1 - t0, val_time_s=t2 - t1,
                        train_s=trainer.train_s)
                # best first: a kill in between leaves last.pt one epoch behind, redone
                trainer.save(log, *([BEST] if improved else []), LAST)
                print(epoch_line(
                    trainer.epoch, trainer.planned(), f"loss {stats['loss']:.4f}, val "
                    f"{val_psnr:.2f} dB (best {trainer.best_psnr:.2f} at epoch "
                    f"{trainer.best_epoch}), lr {stats['lr']:.2e}",
                    f"{t1 - t0:.1f}s train + {t2 - t1:.1f}s val", trainer.left_s()))
        summary = {
            "model": name, "scale": cfg.scale, "params": params, "arch": trainer.arch,
            "best_val_psnr": trainer.best_psnr, "best_epoch": trainer.best_epoch,
            "last_val_psnr": trainer.val_psnr, "epochs": trainer.epoch, "steps": trainer.steps,
            "train_time_s": trainer.elapsed, "train_only_s": trainer.train_s,
            "world_size": d.world_size,
            "validation": f"{t.val_crops} crops" if t.val_crops else "whole images",
        }
        if log:
            checkpoint.write_json(run_dir / "summary.json", summary)
            log.log("final", best_val_psnr=trainer.best_psnr, best_epoch=trainer.best_epoch,
                    params=params, train_time_s=trainer.elapsed)
            print(f"best val PSNR {trainer.best_psnr:.2f} dB at epoch {trainer.best_epoch}; "
                  f"{run_dir / BEST}")
        return summary
    finally:
        if log:
            log.close()
