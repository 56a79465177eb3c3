"""The search job: train shared weights, train the controller on their rewards, pick a cell.

An epoch trains the shared weights (one child per minibatch), then scores
``controller.steps_per_epoch`` cells on the fixed reward crops. For the first
``search.warmup`` of the epochs the controller only watches: children are drawn by the
fair sampler and the scored cells uniformly, with no policy update (TuNAS waits 25%), so
no op is favoured before the shared weights can tell ops apart. After it, a
``search.policy_mix`` share of the training children come from the policy and the rest
from the fair sampler, and the policy steps on batches of ``samples_per_update``
rewards. A cell's reward is its PSNR less the over-budget penalty of
``search_spaces.cost``. Every scored cell joins a pool; the final choice re-scores the
pool on the final weights and takes the best cell within budget (``select``).

With ``search.reward=proxy`` no supernet trains: a cell's PSNR is that of a short
standalone training of its own (``nas_sr.search.proxy``), and the ``final_top`` are trained
again under ``proxy.final_seeds`` before the choice. ``search.final_proxy`` keeps the
shared-weight reward and scores only the ``final_top`` candidates by proxy training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from controllers import Controller, RandomController, Sample
from controllers.fair import FairSampler
from nas_sr.data.crops import RandomCrops
from nas_sr.device import memory_format, resolve_device, seed_everything, set_threads, use_amp
from nas_sr.errors import ConfigError
from nas_sr.progress import epoch_line, progress_bar
from nas_sr.runs.log import RunLog
from nas_sr.search.band import Band
from nas_sr.search.choice import nan_last, write_choice
from nas_sr.search.leaderboard import write_leaderboard
from nas_sr.search.proxy import ProxyReward
from nas_sr.search.supernet import (
    CHECKPOINT,
    build_search_controller,
    build_supernet,
    reward_crops,
    score,
    space_ops,
    train_store,
)
from nas_sr.train.recipe import BlowUpGuard, cosine_lr, not_finite
from nas_sr.train.state import RunState
from search_spaces.cost import within_budget
from search_spaces.genotypes import Genotype


class Search(RunState):
    """All the state of one search; ``state_dict`` is exactly what a checkpoint holds."""

    job, checkpoint_file, section = "search", CHECKPOINT, "search"

    def __init__(self, cfg: DictConfig, run_dir: Path):
        super().__init__(run_dir)
        self.cfg = cfg
        set_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.device)
        self.fmt = memory_format(cfg.get("channels_last", True))
        self.blow_up = BlowUpGuard()
        self.supernet = build_supernet(cfg).to(self.device, memory_format=self.fmt)
        self.optimizer = torch.optim.Adam(self.supernet.parameters(), lr=cfg.search.lr)
        self.amp = use_amp(cfg.search.amp, self.device)
        self.controller = build_search_controller(cfg)
        self.learns = self.controller.learns
        self.ops = space_ops(cfg)
        self.uniform = RandomController(cfg.archs.cell.nodes, ops=self.ops)
        self.fair = FairSampler(cfg.archs.cell.nodes, self.ops)
        s = cfg.search
        self.warmup_epochs = int(s.warmup * s.epochs) if self.learns else 0
        self.band = Band(cfg)
        self.budget = self.band.limits
        self.band.constrain(self.controller, self.uniform)
        # every cell scored in a controller phase (decisions), in the order first scored
        self.pool: dict[tuple[int, ...], None] = {}
        # one generator draws every architecture (training children and controller steps)
        self.arch_rng = torch.Generator().manual_seed(cfg.seed)
        self.controller_step = 0

        d = cfg.data
        self.train_store = train_store(cfg)
        self.crops = RandomCrops(self.train_store, cfg.scale, d.patch_size,
                                 cfg.search.batches_per_epoch * cfg.search.batch_size, cfg.seed)
        self.reward_crops, self.final_crops = reward_crops(cfg, self.device, self.fmt)
        # a proxy reward trains every scored cell; final_proxy the final candidates only
        self.proxy_reward = s.get("reward", "shared") == "proxy"
        self.proxy = (ProxyReward.for_search(
            cfg, self.train_store, {"reward": self.reward_crops, "final": self.final_crops},
            self.device, self.fmt)
            if self.proxy_reward or s.get("final_proxy", False) else None)

    # --- checkpointing ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "supernet": self.supernet.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "controller": self.controller.checkpoint_state(),
            "fair_sampler": self.fair.state_dict(),
            "pool": [list(k) for k in self.pool],
            "arch_rng": self.arch_rng.get_state(),
            "controller_step": self.controller_step,
            "proxy_scores": self.proxy.state_dict() if self.proxy else {},
            **self.run_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.controller.load_checkpoint_state(state["controller"])
        # (a checkpoint from before fair sampling and the pool has neither)
        self.fair.load_state_dict(state.get("fair_sampler", {"pending": []}))
        self.pool = dict.fromkeys(tuple(k) for k in state.get("pool", []))
        self.arch_rng.set_state(state["arch_rng"])
        self.controller_step = state["controller_step"]
        if self.proxy:
            self.proxy.load_state_dict(state.get("proxy_scores", {}))
        self.load_run_state(state)

    # --- the two phases of an epoch -----------------------------------------------------
    def train_shared(self) -> dict[str, float]:
        s, net = self.cfg.search, self.supernet
        if self.proxy_reward:  # no shared weights to train: every cell trains on its own
            return {}
        lr = cosine_lr(s.lr, s.lr_min, self.epoch, s.epochs)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.crops.set_epoch(self.epoch)
        loader = torch.utils.data.DataLoader(
            self.crops, batch_size=s.batch_size, num_workers=self.cfg.data.num_workers,
            pin_memory=self.device.type == "cuda")
        net.train()
        losses = []
        bar = progress_bar(loader, desc=f"epoch {self.epoch + 1}/{s.epochs} shared",
                           leave=False, disable=not self.cfg.logger.progress)
        for lq, gt in bar:
            genotype = self.training_child()
            lq = lq.to(self.device, memory_format=self.fmt)
            gt = gt.to(self.device)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp):
                sr = net(lq, genotype)
            loss = F.l1_loss(sr.float(), gt)
            self.stop_if(self.blow_up(loss.item()), "the shared-weight loss")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if s.grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), s.grad_clip)
            self.optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.4f}")
        return {"loss": sum(losses) / len(losses), "lr": lr}

    @property
    def in_warmup(self) -> bool:
        return self.epoch < self.warmup_epochs

    def training_child(self) -> Genotype:
        """The policy's draw for a ``policy_mix`` share of minibatches after warm-up, else
        the fair sampler's (``search.sampler=fair``) or a uniform draw."""
        s = self.cfg.search
        if (self.learns and not self.in_warmup
                and float(torch.rand((), generator=self.arch_rng)) < s.policy_mix):
            with torch.no_grad():
                return self.controller.sample(self.arch_rng).genotype
        if s.sampler == "fair":
            return self.fair.sample(self.arch_rng)
        return self.uniform.sample(self.arch_rng).genotype

    def cost(self, genotype: Genotype) -> dict[str, Any]:
        return self.band.cost(genotype)

    def propose(self, ctrl: Controller, rng: torch.Generator) -> Sample:
        return self.band.propose(ctrl, rng)

    def penalty(self, cost: dict[str, Any]) -> float:
        return self.band.penalty(cost)

    def reward(self, psnr: float, cost: dict[str, Any]) -> float:
        return self.band.reward(psnr, cost)

    def psnr(self, genotype: Genotype) -> float:
        """The PSNR a reward is made of: through the shared weights on the reward crops, or
        the proxy's (``search.reward``)."""
        if self.proxy_reward:
            return self.proxy.psnr(genotype, self.cfg.search.proxy.seeds, "reward")
        return score(self.supernet, genotype, self.reward_crops, self.cfg.scale)

    def final_psnr(self, genotype: Genotype) -> float:
        """A final candidate's PSNR on the larger final crops: through the shared weights,
        or (``search.final_proxy``, and always under a proxy reward) the proxy's over its
        seeds and ``final_seeds``."""
        if self.proxy:
            p = self.cfg.search.proxy
            return self.proxy.psnr(genotype, [*p.seeds, *p.final_seeds], "final")
        return score(self.supernet, genotype, self.final_crops, self.cfg.scale)

    def train_controller(self, log: RunLog) -> list[float]:
        """Score ``steps_per_epoch`` cells; after warm-up, step the policy on each batch of
        ``samples_per_update`` of them."""
        self.supernet.eval()
        c = self.cfg.controller
        warmup = self.in_warmup
        if self.learns and not warmup and c.rebase and not self.proxy_reward:
            self.controller.rebase()  # the shared weights moved: every reward drifted
        ctrl = self.uniform if warmup else self.controller
        rewards: list[float] = []
        bar = progress_bar(total=c.steps_per_epoch, desc=f"epoch {self.epoch + 1} controller",
                           leave=False, disable=not self.cfg.logger.progress)
        for start in range(0, c.steps_per_epoch, c.samples_per_update):
            batch = [self.propose(ctrl, self.arch_rng)
                     for _ in range(min(c.samples_per_update, c.steps_per_epoch - start))]
            psnrs = [self.psnr(s.genotype) for s in batch]
            for psnr in psnrs:
                self.stop_if(not_finite(psnr), "the reward")
            costs = [self.cost(s.genotype) for s in batch]
            batch_rewards = [self.reward(p, c) for p, c in zip(psnrs, costs, strict=True)]
            if warmup:  # the controller only watches: logged, no update
                stats = [{"reward": r, "entropy": float(s.entropy), "log_prob":
                          float(s.log_prob)} for s, r in zip(batch, batch_rewards, strict=True)]
            else:
                stats = self.controller.update(batch, batch_rewards)
            for s, psnr, cost, st in zip(batch, psnrs, costs, stats, strict=True):
                self.controller_step += 1
                self.pool[tuple(s.genotype.to_decisions(self.ops))] = None
                log.log("controller", controller_step=self.controller_step,
                        epoch=self.epoch + 1, warmup=warmup,
                        genotype=s.genotype.to_dict()["nodes"], psnr=psnr,
                        **cost, **st)
            rewards += batch_rewards
            bar.update(len(batch))
            bar.set_postfix(reward=f"{batch_rewards[-1]:.2f}")
        bar.close()
        return rewards

    # --- end of search: choose the cell -------------------------------------------------
    def select(self) -> tuple[Genotype, float, list[dict[str, Any]]]:
        """Choose the cell the same way for every controller.

        Every cell the search scored, plus ``final_samples`` draws of the final policy and
        its greedy cell (a policy without one: one more draw), is re-scored on the final
        shared weights and reward crops: a reward from an early epoch was measured on
        weights that have trained since. The
        ``final_top`` best rewards within budget are scored again on the larger final crops,
        and the best reward there is the choice (the budget penalty, 0 within budget under
        ``budget.mode=max``, counts as it did in the search). Returns it, its final-crop
        PSNR and every scored cell (``pareto.json``)."""
        self.supernet.eval()
        s = self.cfg.search
        rng = torch.Generator().manual_seed(self.cfg.seed + 1)
        with torch.no_grad():
            # as many candidates for every controller: a learning one's greedy cell is
            # matched by one more draw of a policy that has none (random)
            draws = s.final_samples + (0 if self.learns else 1)
            extra = [self.propose(self.controller, rng).genotype for _ in range(draws)]
            if self.learns:
                extra.append(self.controller.sample(greedy=True).genotype)
        cells = list(dict.fromkeys([Genotype.from_decisions(list(k), self.ops) for k in self.pool]
                                   + extra))
        quiet = not self.cfg.logger.progress
        scored = []
        for g in progress_bar(cells, desc="re-scoring every scored cell", leave=False,
                              disable=quiet):
            cost = self.cost(g)
            scored.append({"genotype": g.to_dict()["nodes"], **cost,
                           "within_budget": within_budget(cost, self.budget),
                           "penalty": self.penalty(cost),
                           "psnr": self.psnr(g)})
        eligible = [i for i, c in enumerate(scored) if c["within_budget"]]
        if not eligible:
            raise ConfigError(f"no scored cell is within search.budget {self.budget}; "
                              f"re-select with a higher one without training again: nas-sr "
                              f"search resume={self.run_dir} search.budget.params=N (or "
                              f"mult_adds=N), or lower the retrain width train.cell.channels/cells")
        top = sorted(eligible, key=lambda i: scored[i]["penalty"] - scored[i]["psnr"]
                     )[:s.final_top]
        for i in progress_bar(top, desc="scoring final candidates", leave=False, disable=quiet):
            scored[i]["final_psnr"] = self.final_psnr(cells[i])
        # (a proxy run that diverged scores NaN: never chosen)
        best = max(top, key=lambda i: nan_last(scored[i]["final_psnr"] - scored[i]["penalty"]))
        scored[best]["chosen"] = True
        return cells[best], scored[best]["final_psnr"], scored

    def run_epoch(self, log: RunLog) -> None:
        """One epoch: the shared weights, then the controller; logged and checkpointed."""
        t0 = time.perf_counter()
        train = self.train_shared()
        t1 = time.perf_counter()
        rewards = self.train_controller(log)
        t2 = time.perf_counter()
        self.count_epoch(t2 - t0)
        mean = sum(rewards) / max(1, len(rewards))
        log.log("epoch", epoch=self.epoch, **train, reward_mean=mean,
                shared_time_s=t1 - t0, controller_time_s=t2 - t1)
        self.save(log, CHECKPOINT)
        write_leaderboard(self.run_dir)
        loss = f"loss {train['loss']:.4f}, " if train else ""
        epochs = self.cfg.search.epochs
        print(epoch_line(self.epoch, str(epochs), f"{loss}mean reward {mean:.2f} dB",
                         f"{t2 - t0:.1f}s", self.eta_s(epochs)))

    def finish(self, log: RunLog, space: dict[str, Any]) -> dict[str, Any]:
        """Choose the cell; write genotype.json, summary.json, pareto.json and the plots."""
        best, best_psnr, scored = self.select()
        if self.proxy:  # the final candidates' proxy runs: kept for a re-selection
            self.save(log, CHECKPOINT)
        return write_choice(self.cfg, self.run_dir, log, best, best_psnr, scored, self.band, {
            "search_time_s": self.elapsed, "epochs": self.epoch,
            "controller_steps": self.controller_step, "space_size": space},
            "proxy training" if self.proxy else "shared weights", self.proxy_reward)
