"""The search job: train shared weights, train the controller on their rewards, pick a cell."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from controllers import Controller, build_controller
from nas_sr import checkpoint
from nas_sr.archs import check_scale
from nas_sr.cache import cache_path, open_store
from nas_sr.data import RandomCrops, fixed_crops, lr_patch_size, resolve_sources
from nas_sr.metrics import psnr_y, quantize
from nas_sr.plot import log_to_wandb, plot_run
from nas_sr.runlog import RunLog
from nas_sr.runtime import (
    TrainingDiverged,
    blow_up,
    cosine_lr,
    memory_format,
    not_finite,
    resolve_device,
    seed_everything,
    set_threads,
)
from search_spaces.genotypes import Genotype, save_genotype, space_size
from search_spaces.network import CellSRNet, count_params

CHECKPOINT = "checkpoint.pt"


def build_supernet(cfg: DictConfig) -> CellSRNet:
    check_scale(cfg.scale)
    a = cfg.archs.cell
    return CellSRNet(cfg.scale, a.channels, a.cells, a.nodes)


@torch.inference_mode()
def score(net: CellSRNet, genotype: Genotype, lr: torch.Tensor, hr: torch.Tensor,
          scale: int, batch_size: int = 64) -> float:
    """Mean Y-PSNR of ``genotype`` on fixed crops: the controller's reward."""
    values = []
    for i in range(0, len(lr), batch_size):
        sr = quantize(net(lr[i:i + batch_size], genotype))
        values.append(psnr_y(sr, quantize(hr[i:i + batch_size]), shave=scale))
    return float(torch.cat(values).mean())


def _stop_if(problem: str | None, what: str, epoch: int, run_dir: Path) -> None:
    if problem:
        kept, then = ((f"the last good checkpoint is {run_dir / CHECKPOINT}",
                       f"resume with `nas-sr search resume={run_dir}`") if epoch > 1
                      else ("no checkpoint had been written yet", "start again"))
        raise TrainingDiverged(f"{what} {problem} in epoch {epoch}; {kept}. Lower "
                               f"search.lr (or search.grad_clip) and {then}.")


class Search:
    """All the state of one search; ``state_dict`` is exactly what a checkpoint holds."""

    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg, self.run_dir = cfg, run_dir
        set_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.fmt = memory_format(cfg.get("channels_last", True))
        self.supernet = build_supernet(cfg).to(self.device, memory_format=self.fmt)
        self.optimizer = torch.optim.Adam(self.supernet.parameters(), lr=cfg.search.lr)
        ctrl = OmegaConf.to_container(cfg.controller)
        ctrl.pop("steps_per_epoch", None)  # the search's schedule, not the policy's
        self.controller: Controller = build_controller(
            ctrl.pop("name"), cfg.archs.cell.nodes, **ctrl
        )
        # one generator draws every architecture (training children and controller steps)
        self.arch_rng = torch.Generator().manual_seed(cfg.seed)
        self.epoch = 0
        self.controller_step = 0
        self.elapsed = 0.0
        self.log_offset: int | None = None

        d = cfg.data
        train_src, val_src = resolve_sources(d, cfg.scale)
        min_lr = lr_patch_size(d.patch_size, cfg.scale)
        progress = cfg.logger.progress
        self.train_store = open_store(train_src, cfg.scale, min_lr,
                                      cache_path(d, cfg.scale, "train"), "training images",
                                      progress)
        val_store = open_store(val_src, cfg.scale, min_lr, cache_path(d, cfg.scale, "val"),
                               "validation images", progress)
        self.crops = RandomCrops(self.train_store, cfg.scale, d.patch_size,
                                 cfg.search.batches_per_epoch * cfg.search.batch_size, cfg.seed)
        # the reward batch and the final-selection set are fixed crops of the val images
        def crops(count: int, seed: int) -> list[torch.Tensor]:
            return [t.to(self.device, memory_format=self.fmt)
                    for t in fixed_crops(val_store, cfg.scale, d.patch_size, count, seed)]

        self.val_lr, self.val_hr = crops(d.val_crops, seed=1)
        self.final_lr, self.final_hr = crops(d.final_crops, seed=2)

    # --- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "supernet": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "controller": self.controller.checkpoint_state(),
            "arch_rng": self.arch_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "controller_step": self.controller_step,
            "elapsed": self.elapsed,
            "log_offset": self.log_offset,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.controller.load_checkpoint_state(state["controller"])
        self.arch_rng.set_state(state["arch_rng"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.controller_step = state["epoch"], state["controller_step"]
        self.elapsed, self.log_offset = state["elapsed"], state["log_offset"]

    # --- the two phases of an epoch -----------------------------------------------------
    def train_shared(self) -> dict[str, float]:
        s, net = self.cfg.search, self.supernet
        lr = cosine_lr(s.lr, s.lr_min, self.epoch, s.epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.crops.set_epoch(self.epoch)
        loader = torch.utils.data.DataLoader(
            self.crops, batch_size=s.batch_size, num_workers=self.cfg.data.num_workers,
            pin_memory=self.device.type == "cuda")
        net.train()
        losses = []
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{s.epochs} shared",
                   leave=False, disable=not self.cfg.logger.progress)
        for lr_img, hr_img in bar:
            with torch.no_grad():
                genotype = self.controller.sample(self.arch_rng).genotype
            lr_img = lr_img.to(self.device, memory_format=self.fmt)
            hr_img = hr_img.to(self.device)
            loss = F.l1_loss(net(lr_img, genotype), hr_img)
            _stop_if(blow_up(loss.item()), "the shared-weight loss", self.epoch + 1,
                     self.run_dir)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), s.grad_clip)
            self.optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.4f}")
        return {"loss": sum(losses) / len(losses), "lr": lr}

    def train_controller(self, log: RunLog) -> list[float]:
        self.supernet.eval()
        rewards = []
        steps = self.cfg.controller.steps_per_epoch
        bar = tqdm(range(steps), desc=f"epoch {self.epoch + 1} controller",
                   leave=False, disable=not self.cfg.logger.progress)
        for _ in bar:
            sample = self.controller.sample(self.arch_rng)
            reward = score(self.supernet, sample.genotype, self.val_lr, self.val_hr,
                           self.cfg.scale)
            _stop_if(not_finite(reward), "the reward", self.epoch + 1, self.run_dir)
            stats = self.controller.update(sample, reward)
            self.controller_step += 1
            log.log("controller", controller_step=self.controller_step, epoch=self.epoch + 1,
                    genotype=sample.genotype.to_dict()["nodes"], **stats)
            rewards.append(reward)
            bar.set_postfix(reward=f"{reward:.2f}", baseline=f"{stats['baseline']:.2f}")
        return rewards

    # --- end of search: choose the cell -------------------------------------------------
    def select(self) -> tuple[Genotype, float, list[dict[str, Any]]]:
        """Score ``final_samples`` draws (plus the greedy cell) on the final crops."""
        self.supernet.eval()
        rng = torch.Generator().manual_seed(self.cfg.seed + 1)
        with torch.no_grad():
            candidates = [self.controller.sample(greedy=True).genotype]
            candidates += [self.controller.sample(rng).genotype
                           for _ in range(self.cfg.search.final_samples)]
        unique = list(dict.fromkeys(candidates))
        scored = [{"genotype": g.to_dict()["nodes"],
                   "val_psnr": score(self.supernet, g, self.final_lr, self.final_hr,
                                     self.cfg.scale)}
                  for g in tqdm(unique, desc="scoring final candidates", leave=False,
                                disable=not self.cfg.logger.progress)]
        best = max(range(len(unique)), key=lambda i: scored[i]["val_psnr"])
        return unique[best], scored[best]["val_psnr"], scored


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run (or resume) a search in ``run_dir``; returns the summary it writes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / CHECKPOINT
    state = checkpoint.load(ckpt) if ckpt.is_file() else None  # a damaged one fails here, fast
    search = Search(cfg, run_dir)
    resumed = state is not None
    if resumed:
        search.load_state_dict(state)
        print(f"resuming {run_dir} after epoch {search.epoch}, "
              f"controller step {search.controller_step}")
    sizes = space_size(cfg.archs.cell.nodes)
    print(f"search space: {sizes['decision_sequences']:,} decision sequences per cell "
          f"({sizes['distinct_cells']:,} distinct cells; the paper's formula gives "
          f"{sizes['paper_formula']:.3g})")
    log = RunLog(run_dir, search.log_offset if resumed else 0,
                 cfg.logger.wandb, OmegaConf.to_container(cfg, resolve=True))
    try:
        if not resumed:
            log.log("start", space=sizes, params_supernet=count_params(search.supernet),
                    device=str(search.device))
        while search.epoch < cfg.search.epochs:
            t0 = time.perf_counter()
            train = search.train_shared()
            t1 = time.perf_counter()
            rewards = search.train_controller(log)
            t2 = time.perf_counter()
            search.epoch += 1
            search.elapsed += t2 - t0
            log.log("epoch", epoch=search.epoch, **train,
                    reward_mean=sum(rewards) / max(1, len(rewards)),
                    shared_time_s=t1 - t0, controller_time_s=t2 - t1)
            search.log_offset = log.offset
            log.flush()
            checkpoint.save_atomic(search.state_dict(), ckpt)
            print(f"epoch {search.epoch}/{cfg.search.epochs}: loss {train['loss']:.4f}, "
                  f"mean reward {sum(rewards) / max(1, len(rewards)):.2f} dB, "
                  f"{t2 - t0:.1f}s")

        best, best_psnr, candidates = search.select()
        a = cfg.archs.cell
        net = CellSRNet(cfg.scale, a.channels, a.cells, a.nodes, best)
        summary = {
            "genotype": best.to_dict(),
            "genotype_str": str(best),
            "val_psnr": best_psnr,
            "params": count_params(net),
            "search_time_s": search.elapsed,
            "epochs": search.epoch,
            "controller_steps": search.controller_step,
            "controller": cfg.controller.name,
            "scale": cfg.scale,
            "space_size": sizes,
            "candidates": candidates,
        }
        save_genotype(best, run_dir / "genotype.json", scale=cfg.scale,
                      arch=OmegaConf.to_container(cfg.archs.cell))
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.log("final", val_psnr=best_psnr, genotype=best.to_dict()["nodes"],
                params=summary["params"], search_time_s=search.elapsed)
        log.flush()
        if cfg.logger.plots:
            plots = plot_run(run_dir)
            if log.wandb is not None:
                log_to_wandb(log.wandb, plots)
        print(f"best cell: {best}\n  val PSNR {best_psnr:.2f} dB (shared weights), "
              f"{summary['params']:,} params standalone; written to {run_dir}")
        return summary
    finally:
        log.close()
