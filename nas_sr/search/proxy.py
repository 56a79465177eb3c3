"""A low-fidelity reward: each cell trained briefly from scratch, on its own, then scored.

The shared-weight score cannot see what retraining sees inside one size band (Kendall tau
0.29 against retrained PSNR, docs/RESULTS.md), while a standalone retrain ranks cells as
well as a second seed does. The proxy is a short standalone training (``search.proxy``):
Adam whose cosine decays to zero over its own steps, so the last weights are settled
rather than caught mid-step, then Y-PSNR on fixed crops of the reward images. Half the
compare's retrain recipe ranks as faithfully as the whole; shrinking width, depth or
pixels EcoNAS-style (Zhou et al. 2020) or the steps further was measured and is noise.

Every cell is trained on the same crops in the same order and from the same seeds
(common random numbers), so two cells' scores differ by what the cells do, not by the
crops they were dealt; a cell's score is the mean over ``seeds``.

A search for a network on Y (``train.cell.colors=1``) trains its proxies on the crops' Y
and scores them as every Y model is scored: Y through the network, chroma bicubic.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from nas_sr.archs.luma import LumaSR, rgb_to_luma
from nas_sr.data.crops import RandomCrops
from nas_sr.metrics import Pairs, crop_psnrs
from nas_sr.schema.train import retrain_form, retrain_width
from nas_sr.train.recipe import cosine_lr, not_finite
from search_spaces.genotypes import Genotype
from search_spaces.network import FORM, CellSRNet, form_overrides

SCORE_BATCH = 64  # scoring crops per forward pass
CPU = torch.device("cpu")


@dataclass(frozen=True)
class ProxySetting:
    """The reduced training setting of one proxy run (``search.proxy``)."""

    channels: int
    cells: int
    steps: int
    batch_size: int
    patch_size: int  # HR crop side
    lr: float
    colors: int = 3  # 1: the network on Y, as the retrain's (train.cell.colors)
    upsampler: str = "conv3"  # the retrain's (train.cell.upsampler)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ProxySetting:
        """``cfg.search.proxy``, its null width the retrain's (train.cell, else archs.cell),
        on the retrain's colours."""
        proxy, (channels, cells) = cfg.search.proxy, retrain_width(cfg)
        return cls(channels=proxy.channels or channels, cells=proxy.cells or cells,
                   **{k: proxy[k] for k in ("steps", "batch_size", "patch_size", "lr")},
                   **retrain_form(cfg))

    def record(self) -> dict[str, Any]:
        """The setting as saved beside its scores, less the form's defaults (so the runs
        and tables made before the form was a choice still match it)."""
        return {k: v for k, v in vars(self).items() if k not in FORM} | form_overrides(vars(self))


def proxy_batches(store: Any, scale: int, setting: ProxySetting, seed: int) -> Pairs:
    """The ``steps * batch_size`` training crops every proxy run sees, in one fixed order,
    as uint8 (a quarter of the memory; exact, since they were 8-bit images)."""
    crops = RandomCrops(store, scale, setting.patch_size, setting.steps * setting.batch_size,
                        seed)

    def to_uint8(t: torch.Tensor) -> torch.Tensor:
        return (t * 255).round().to(torch.uint8)

    # each crop narrowed as it is drawn: the float copies of them all would be 4x the size
    lq, gt = zip(*((to_uint8(a), to_uint8(b)) for a, b in (crops[i] for i in
                                                           range(len(crops)))), strict=True)
    return torch.stack(lq), torch.stack(gt)


def proxy_score(genotype: Genotype, batches: Pairs, crops: dict[str, Pairs], scale: int,
                setting: ProxySetting, seed: int, device: torch.device = CPU,
                fmt: torch.memory_format = torch.contiguous_format) -> dict[str, float]:
    """:func:`proxy_run`'s mean Y-PSNR on each named set of ``crops``."""
    runs = proxy_run(genotype, batches, crops, scale, setting, seed, device, fmt)
    return {name: float(psnrs.mean()) for name, psnrs in runs.items()}


def proxy_run(genotype: Genotype, batches: Pairs, crops: dict[str, Pairs], scale: int,
              setting: ProxySetting, seed: int, device: torch.device = CPU,
              fmt: torch.memory_format = torch.contiguous_format) -> dict[str, torch.Tensor]:
    """Train ``genotype`` from ``seed``'s initial weights in ``setting`` on ``batches``;
    the Y-PSNR of each crop of each named set of ``crops``. NaN when training diverged (the
    search refuses it as a reward and never chooses it)."""
    lq_all, gt_all = batches
    b = setting.batch_size
    if len(lq_all) < setting.steps * b:
        raise ValueError(f"{len(lq_all)} crops for {setting.steps} steps of {b}")
    # the global RNG belongs to the calling job: a proxy run must not move it
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = CellSRNet(scale, *genotype.width((setting.channels, setting.cells)),
                        genotype.num_nodes, genotype, colors=setting.colors,
                        upsampler=setting.upsampler)
    net = net.to(device, memory_format=fmt).train()
    opt = torch.optim.Adam(net.parameters(), lr=setting.lr)
    for step in range(setting.steps):
        for group in opt.param_groups:  # cosine to 0: the last steps settle the weights
            group["lr"] = cosine_lr(setting.lr, 0.0, step, setting.steps)
        lq = (lq_all[step * b:(step + 1) * b].float() / 255).to(device, memory_format=fmt)
        gt = (gt_all[step * b:(step + 1) * b].float() / 255).to(device)
        if setting.colors == 1:
            lq, gt = rgb_to_luma(lq), rgb_to_luma(gt)
        loss = F.l1_loss(net(lq), gt)
        if not_finite(loss.item()):
            return {name: torch.full((len(pair[1]),), float("nan"))
                    for name, pair in crops.items()}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    scored = LumaSR(net) if setting.colors == 1 else net
    with torch.no_grad():
        return {name: crop_psnrs(scored, (lq.to(device, memory_format=fmt), gt.to(device)),
                                 scale, SCORE_BATCH).cpu()
                for name, (lq, gt) in crops.items()}


class ProxyReward:
    """Proxy PSNRs of cells on named crop sets, one run per (cell, seed), each run once: a
    cell met again, or a run resumed from a checkpoint, reuses its scores."""

    def __init__(self, setting: ProxySetting, batches: Pairs, crops: dict[str, Pairs],
                 scale: int, device: torch.device, fmt: torch.memory_format):
        self.setting, self.batches, self.crops = setting, batches, crops
        self.scale, self.device, self.fmt = scale, device, fmt
        self.scores: dict[Genotype, dict[int, dict[str, float]]] = {}

    @classmethod
    def for_search(cls, cfg: DictConfig, store: Any, crops: dict[str, Pairs],
                   device: torch.device, fmt: torch.memory_format) -> ProxyReward:
        """The proxy of search config ``cfg`` (``search.proxy``), its crops drawn from
        ``store`` with the search's seed, scoring on ``crops``."""
        setting = ProxySetting.from_config(cfg)
        return cls(setting, proxy_batches(store, cfg.scale, setting, cfg.seed), crops,
                   cfg.scale, device, fmt)

    def psnr(self, genotype: Genotype, seeds: Iterable[int], on: str) -> float:
        """The mean proxy PSNR of ``genotype`` over ``seeds`` (training those not yet run)
        on the crops named ``on``."""
        runs = self.scores.setdefault(genotype, {})
        seeds = list(seeds)
        for seed in seeds:
            if seed not in runs:
                runs[seed] = proxy_score(genotype, self.batches, self.crops, self.scale,
                                         self.setting, seed, self.device, self.fmt)
        return sum(runs[s][on] for s in seeds) / len(seeds)

    def state_dict(self) -> dict[str, Any]:
        return {"setting": self.setting.record(),
                "scores": [[g.to_dict()["nodes"], {str(s): p for s, p in v.items()}]
                           for g, v in self.scores.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Scores of the same setting; those of another (a re-selection with a changed
        ``search.proxy``) measured something else and are dropped."""
        same = state.get("setting") == self.setting.record()
        self.scores = {_cell(k): {int(s): p for s, p in v.items()}
                       for k, v in state.get("scores", [])} if same else {}


def _cell(key: list[Any]) -> Genotype:
    """A checkpointed score's cell: its nodes, or (written before other spaces) the
    default space's decisions."""
    if all(isinstance(x, int) for x in key):
        return Genotype.from_decisions(key)
    return Genotype.from_dict({"nodes": key})
