"""Fine-tuning: the whole encoder plus a linear head, trained end to end with layer-wise lr
decay, early stopping on validation macro AUROC; the best epoch's weights are tested.

Optimiser recipe after MAE/BEiT fine-tuning (He et al. 2022; layer decay 0.65-0.75, drop_path
0.1, wd 0.05) via timm's ``param_groups_layer_decay``. Methods that were not pretrained
(``scratch``) get no layer decay: their lower layers need full lr.

The head reads features standardised per dimension (BatchNorm without affine, the layer MAE puts
before its linear-probe head) and starts from the linear probe of the initial encoder (LP-FT,
Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features") [choice]. MAE's fine-tuning
head (raw features, weights of std 2e-5, ``head_init="random"`` keeps that start) assumes ~100
epochs: with the few hundred steps of the ``cpu`` preset it barely leaves zero, and fine-tuning
scored far below the frozen linear probe of the same encoder (README, "Protocols"). An encoder
that was not pretrained (``scratch``) has no features to preserve and no probe worth starting
from: its random features vary across records by ~1e-3 of their size, a probe fitted to them has
large weights on standardised noise, and LP-FT from it saturated the scores (validation macro
AUROC 0.585). Its head (``head_init="prior"``) [choice] reads the features standardised per
dimension with batch statistics (from the first training batch on, a BatchNorm without affine)
through weights of std 0.02 (timm's ViT init), each label's bias at the log-odds of its training
prevalence (the prior initialisation of Lin et al. 2017, "Focal Loss for Dense Object
Detection", Sec. 4.1). Why: from MAE's head (zero bias, weights of std 2e-5, raw features) the
first hundreds of steps only learn the prevalences, as AdamW moves a bias by about the learning
rate per step; and LAMAE's transformer, whose CLS readout varies across records by ~4e-4 of its
size at random init, stays at the constant prediction on raw features. Measured on the synthetic
default (seed 0, 150 steps of batch 64, prior bias and std-0.02 weights): on raw features the
training loss stayed at the prevalences' level and the features' spread did not grow at lr 5e-4
(it fell 4- and 20-fold at 1e-3 and 3e-3); on standardised features the loss fell below that
level (0.278 against 0.319 on the same batch at step 120) and the spread grew 40-fold.

Equal tuning (issue 12): the learning rate of every method is chosen on validation from the same
grid, ``lr_grid`` — multiples of its recipe's ``base_lr`` — each candidate trained with the same
schedule and early stopping, the best validation macro AUROC kept
(:class:`~benchmark.eval.tuning.Tuning`); the grid, every candidate's score and the choice are
recorded, and the test split is scored once, with the chosen candidate.

Methods trained from random init on the labels alone (``Method.supervised_only``: ``scratch``,
``xresnet1d``) get their own recipe, ``supervised`` (:class:`SupervisedRecipe`): a supervised
model needs more epochs and a larger learning rate than a pretrained one, and a benchmark that
fine-tunes it like a pretrained encoder (56 steps at lr 2.5e-5 on the ``cpu`` preset, macro AUROC
0.542) overstates every pretraining method. With ``match_compute`` each of its candidates may
train for the FLOPs the reference pretrained method (the preset's budget method) spends on
pretraining plus one fine-tuning run of the cell, early stopping permitting; the FLOPs every
method spends here are recorded beside the pretraining FLOPs.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from timm.layers import trunc_normal_
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from benchmark.config import require_positive
from benchmark.data.loader import make_loader
from benchmark.eval.losses import known_bce
from benchmark.eval.metrics import macro_auroc
from benchmark.eval.protocol import CellContext, Prediction, Protocol, ProtocolOutput, run_inference
from benchmark.eval.protocols.linear import FittedProbe, LinearProbeConfig, cached_readout_inputs, fit_probe
from benchmark.eval.tuning import Tuning, score
from benchmark.method.base import Method
from benchmark.registry import PROTOCOLS
from benchmark.train import distributed
from benchmark.train.flops import supervised_step_flops, synthetic_batch
from benchmark.train.monitor import NonFiniteLossError, check_finite, max_lr
from benchmark.train.optim import OptimConfig, build_optimizer
from benchmark.train.runtime import autocast, set_seed

log = logging.getLogger("benchmark")

#: "linear_probe": standardised features and the initial encoder's probe (LP-FT); "random": raw
#: features, MAE's near-zero head; "prior": features standardised with batch statistics, weights
#: of std 0.02 and biases at the training prevalences' log-odds (a network trained from random init)
HEAD_INITS = ("linear_probe", "random", "prior")


@dataclass
class SupervisedRecipe:
    """How a method that is not pretrained is trained on the labels (``FinetuneConfig.supervised``).

    [choice] AdamW with warmup and cosine decay, no layer decay (every layer is random), weight
    decay 0.05 and stochastic depth 0.1 against overfitting the few labelled records, at least
    ``epochs`` epochs and, with ``match_compute``, as many as the reference pretrained method's
    pretraining plus fine-tuning FLOPs allow; early stopping on validation macro AUROC with
    ``patience`` epochs, counted once the warmup is over.
    """

    epochs: int = 30  # at least this many (more if match_compute allows more)
    patience: int = 10
    drop_path: float = 0.1
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(base_lr=2e-3, weight_decay=0.05, beta1=0.9, beta2=0.999, warmup_frac=0.05)
    )
    match_compute: bool = True
    #: "prior" (module docstring); "random": MAE's near-zero head; "linear_probe": standardised
    #: features and the head of the random encoder's linear probe (LP-FT from random init). A
    #: random transformer's features vary across records by ~1e-3 of their size, so a probe fitted
    #: to them weighs standardised noise: LP-FT left scratch at validation macro AUROC 0.585 on the
    #: cpu preset (base_lr 6e-4, synthetic default, seed 0)
    head_init: str = "prior"

    def __post_init__(self):
        require_positive(self, "epochs", "patience")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"supervised.head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"supervised.drop_path must be in [0, 1), got {self.drop_path}")
        if self.optim.layer_decay != 1:
            raise ValueError(
                "supervised.optim.layer_decay must be 1: a model trained from random init has no layers to keep"
            )


@dataclass
class FinetuneConfig:
    epochs: int = 10
    batch_size: int = 64
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            base_lr=1e-3, weight_decay=0.05, beta1=0.9, beta2=0.999, warmup_frac=0.1, layer_decay=0.75
        )
    )
    drop_path: float = 0.1
    patience: int = 3  # epochs without validation improvement before stopping (after the warmup)
    head_init: str = "linear_probe"  # or "random" (MAE: head weights of std 2e-5) or "prior" (HEAD_INITS)
    probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)  # the initial probe's fit
    #: learning-rate candidates, as multiples of the recipe's base_lr: the same grid for every method
    lr_grid: tuple[float, ...] = (0.3, 1.0, 3.0)
    supervised: SupervisedRecipe = field(default_factory=SupervisedRecipe)

    def __post_init__(self):
        require_positive(self, "epochs", "batch_size", "patience")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if not self.lr_grid or min(self.lr_grid) <= 0 or len(set(self.lr_grid)) < len(self.lr_grid):
            raise ValueError(f"lr_grid must hold distinct positive multiples of base_lr, got {self.lr_grid}")


@dataclass
class Recipe:
    """What one training run uses: the pretrained methods' fine-tuning recipe or the supervised one."""

    epochs: int
    patience: int
    drop_path: float
    optim: OptimConfig
    supervised: bool
    probe: bool  # fit the initial linear probe: standardised features (and the head, if probe_head)
    head_init: str  # HEAD_INITS

    @property
    def probe_head(self) -> bool:
        return self.head_init == "linear_probe"

    @classmethod
    def of(cls, cfg: FinetuneConfig, method: Method) -> Recipe:
        if method.supervised_only():
            s = cfg.supervised
            return cls(s.epochs, s.patience, s.drop_path, s.optim, True, s.head_init == "linear_probe", s.head_init)
        return cls(cfg.epochs, cfg.patience, cfg.drop_path, cfg.optim, False, True, cfg.head_init)


@dataclass
class Candidate:
    """One learning rate's training run: its best validation epoch and weights."""

    base_lr: float
    val_macro_auroc: float = -np.inf
    best_epoch: int = -1
    history: list[float] = field(default_factory=list)
    train_loss_history: list[float] = field(default_factory=list)  # per epoch
    steps: int = 0
    state: dict | None = None
    failure: NonFiniteLossError | None = None  # the training loss became NaN/inf


class FeatureStandardiser(nn.Module):
    """Per-dimension standardisation: batch statistics in training (over all torchrun processes,
    so DDP equals one process; ``SyncBatchNorm`` runs on CUDA only), running statistics in
    evaluation — ``BatchNorm1d(affine=False)``. Starts from the training split's statistics,
    so an untrained model scores exactly like the probe it was initialised from, or, without
    them (``mean``/``std`` None, of ``dim`` dimensions), from the first training batch's: a
    random encoder's features have a spread ~1e-3 of their mean, which a running mean started at
    zero would take many batches to find."""

    running_mean: torch.Tensor  # buffers (register_buffer)
    running_var: torch.Tensor
    started: torch.Tensor

    def __init__(
        self,
        mean: torch.Tensor | None,
        std: torch.Tensor | None,
        momentum: float = 0.1,
        min_std: float = 1e-6,
        dim: int | None = None,
    ):
        super().__init__()
        self.momentum, self.min_std = momentum, min_std  # the probe's clamp, not an additive eps
        if mean is None or std is None:
            assert dim is not None, "give the statistics or the number of dimensions"
            mean, std = torch.zeros(dim), torch.ones(dim)
        self.register_buffer("running_mean", mean.detach().clone())
        self.register_buffer("running_var", std.detach().clone() ** 2)
        self.register_buffer("started", torch.tensor(dim is None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return (x - self.running_mean) / self.running_var.sqrt().clamp_min(self.min_std)
        n = distributed.sum_across_ranks(torch.tensor(float(len(x)), device=x.device))
        mean = distributed.sum_across_ranks(x.sum(0)) / n
        centred = x - mean
        var = distributed.sum_across_ranks(centred.pow(2).sum(0)) / n
        with torch.no_grad():
            unbiased = var * n / (n - 1).clamp_min(1)
            weight = self.momentum if bool(self.started) else 1.0
            self.running_mean.lerp_(mean, weight)
            self.running_var.lerp_(unbiased, weight)
            self.started.fill_(True)
        return centred / var.sqrt().clamp_min(self.min_std)


class Classifier(nn.Module):
    """Encoder + standardiser + linear head; ``group_matcher`` gives timm the encoder's layer ids
    (head last). ``init`` (the initial encoder's probe) gives the standardiser's starting
    statistics and, unless ``probe_head`` is False, the head's weights; without it the head reads
    raw features and starts near zero (MAE) or, given each label's training prevalence
    ``label_prior``, reads them standardised with batch statistics as a supervised network's head
    (weights of std 0.02, biases at the prevalences' log-odds; module docstring)."""

    def __init__(
        self,
        encoder: Method,
        n_labels: int,
        init: FittedProbe | None = None,
        probe_head: bool = True,
        label_prior: np.ndarray | None = None,
    ):
        super().__init__()
        self.encoder = encoder
        self.standardise: nn.Module = nn.Identity()
        if init is not None:
            self.standardise = FeatureStandardiser(init.mean.cpu(), init.std.cpu())
        elif label_prior is not None:
            self.standardise = FeatureStandardiser(None, None, dim=encoder.feature_dim)
        self.head = nn.Linear(encoder.feature_dim, n_labels)
        if init is not None and probe_head:
            with torch.no_grad():
                self.head.weight.copy_(init.weight.T)
                self.head.bias.copy_(init.bias)
        elif label_prior is not None:
            trunc_normal_(self.head.weight, std=0.02)
            prior = torch.as_tensor(np.clip(label_prior, 1e-4, 1 - 1e-4), dtype=torch.float32)
            with torch.no_grad():
                self.head.bias.copy_(torch.logit(prior))
        else:
            trunc_normal_(self.head.weight, std=2e-5)
            nn.init.zeros_(self.head.bias)
        for name, param in encoder.named_parameters():
            if encoder.is_pretraining_only(name):
                param.requires_grad_(False)

    def forward(self, signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.standardise(self.encoder.features(signals, lead_mask)))

    def group_matcher(self, coarse: bool = False):
        head_id = self.encoder.num_layers

        def layer_of(name: str) -> int:
            return self.encoder.layer_id(name.removeprefix("encoder.")) if name.startswith("encoder.") else head_id

        return layer_of


@PROTOCOLS.register("finetune")
class Finetune(Protocol):
    summary = "Full fine-tuning from the linear probe (LP-FT), layer-wise lr decay, early stopping on val macro AUROC"
    kind = "finetune"
    Config = FinetuneConfig

    def run(self, ctx: CellContext) -> ProtocolOutput:
        cfg, arrays, device = self.config, ctx.arrays, ctx.device
        recipe = Recipe.of(cfg, ctx.method)
        probe = self.initial_probe(ctx) if recipe.probe else None
        batch_size = min(cfg.batch_size, len(ctx.train_records))  # tiny label-efficiency subsets
        loader = make_loader(
            arrays,
            ctx.train_records,
            ctx.method.input_spec.window,
            max(1, batch_size // distributed.world_size()),
            train=True,
            seed=ctx.seed,
            pin_memory=device.type == "cuda",
            lead_subset=ctx.lead_subset,
            rank=distributed.rank(),
            world_size=distributed.world_size(),
        )
        per_sample = supervised_step_flops(ctx.method, synthetic_batch(ctx.method, 2), len(arrays.label_names)) / 2
        epochs, budget_flops = self.epochs(ctx, recipe, len(loader), batch_size, per_sample)

        tuning, best, samples, runs = Tuning("base_lr"), None, 0, []
        failures = []
        ctx.monitor.start(0, len(cfg.lr_grid) * epochs * len(loader))  # at most: early stopping ends sooner
        for multiplier in cfg.lr_grid:
            candidate = self.train(
                ctx, recipe, recipe.optim.base_lr * multiplier, epochs, probe, loader, batch_size, samples // batch_size
            )
            samples += candidate.steps * batch_size
            runs.append((len(candidate.history), candidate.best_epoch))
            if candidate.failure is not None:  # a diverged learning rate is a candidate that lost
                failures.append(candidate.failure)
                log.warning(
                    "finetune %s: base_lr %.3g diverged (%s)", ctx.method.name, candidate.base_lr, candidate.failure
                )
                tuning.add(candidate.base_lr, float("nan"))
                continue
            if tuning.add(candidate.base_lr, candidate.val_macro_auroc) or best is None:
                best = candidate
            else:
                candidate.state = None  # only the best candidate's weights are kept
            log.info(
                "finetune %s: base_lr %.3g -> val macro AUROC %.4f (epoch %d)",
                ctx.method.name,
                candidate.base_lr,
                candidate.val_macro_auroc,
                candidate.best_epoch,
            )
        if best is None:  # every learning rate diverged: the cell is recorded as diverged
            raise failures[-1]
        assert best.state is not None
        encoder = ctx.rebuild(drop_path=recipe.drop_path)
        model = Classifier(encoder, len(arrays.label_names), probe, recipe.probe_head, self.label_prior(ctx, recipe))
        model = model.to(device)
        model.load_state_dict(best.state)
        scores, labels = self.predict(ctx, model, arrays.splits["test"], "test")
        prediction = Prediction(labels, scores, np.asarray(arrays.record_ids[arrays.splits["test"]]))
        probe_details = {} if probe is None else {"probe_l2": probe.l2, "probe_val_macro_auroc": probe.val_macro_auroc}
        return ProtocolOutput(
            prediction,
            {
                "recipe": "supervised" if recipe.supervised else "finetune",
                "tuning": {
                    **tuning.record(),
                    "lr_multipliers": list(cfg.lr_grid),
                    "epochs_run": [n for n, _ in runs],
                    "best_epoch": [b for _, b in runs],
                    "diverged": [str(f.loss) for f in failures],
                },
                "max_epochs": epochs,
                "best_epoch": best.best_epoch,
                "epochs_run": len(best.history),
                "val_macro_auroc": best.val_macro_auroc,
                "val_history": best.history,  # per epoch, as train_loss_history
                "train_loss_history": best.train_loss_history,
                "n_train": int(len(ctx.train_records)),
                **probe_details,
            },
            compute={
                "flops_per_sample": per_sample,
                "samples": samples,
                "flops": per_sample * samples,
                "budget_flops_per_candidate": budget_flops,
                "budget_reference": ctx.supervised_budget.reference if ctx.supervised_budget and budget_flops else None,
            },
        )

    @staticmethod
    def label_prior(ctx: CellContext, recipe: Recipe) -> np.ndarray | None:
        """Each label's prevalence among the records trained on that know it, for a ``prior`` head."""
        if recipe.head_init != "prior":
            return None
        targets = ctx.arrays.targets(ctx.train_records)
        known = ~np.isnan(targets)
        return np.where(known, targets, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)

    def epochs(
        self, ctx: CellContext, recipe: Recipe, steps_per_epoch: int, batch_size: int, flops_per_sample: float
    ) -> tuple[int, float | None]:
        """The most epochs a candidate may train, and the FLOP budget behind it (supervised
        methods with ``match_compute``: the reference method's pretraining plus one fine-tuning
        run of ``epochs`` epochs over the same records)."""
        if not (recipe.supervised and self.config.supervised.match_compute and ctx.supervised_budget):
            return recipe.epochs, None
        budget = ctx.supervised_budget.flops(self.config.epochs * steps_per_epoch * batch_size)
        steps = math.ceil(budget / (flops_per_sample * batch_size))
        return max(recipe.epochs, math.ceil(steps / steps_per_epoch)), budget

    def train(
        self,
        ctx: CellContext,
        recipe: Recipe,
        base_lr: float,
        epochs: int,
        probe: FittedProbe | None,
        loader,
        batch_size: int,
        step_offset: int = 0,
    ) -> Candidate:
        """Train one learning-rate candidate from the cell's initial weights (the same seed, data
        order and head for every candidate), keeping its best validation epoch. A candidate whose
        training loss becomes non-finite stops there and keeps its failure (``step_offset``: the
        cell's steps before it, so the monitor's curves of successive candidates follow on)."""
        set_seed(ctx.seed)
        device = ctx.device
        encoder = ctx.rebuild(drop_path=recipe.drop_path)
        model = Classifier(
            encoder, len(ctx.arrays.label_names), probe, recipe.probe_head, self.label_prior(ctx, recipe)
        )
        model = model.to(device)
        training_model: nn.Module = model
        if distributed.world_size() > 1:  # each rank trains on its share of every batch
            if device.type == "cuda":  # BatchNorm (xresnet1d) over the global batch, as in one process
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            training_model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        # the warmup is a fraction of the recipe's epochs, not of a compute-matched maximum: on a
        # label-efficiency subset of a few records the maximum runs to thousands of epochs, and
        # early stopping (patience counts after the warmup) must be able to end training long before
        warmup_frac = recipe.optim.warmup_frac * min(1.0, recipe.epochs / epochs)
        optim = replace(recipe.optim, base_lr=base_lr, warmup_frac=warmup_frac)
        optimizer, scheduler = build_optimizer(model, optim, batch_size, epochs * len(loader), encoder.no_weight_decay)
        warmup_epochs = math.ceil(int(optim.warmup_frac * epochs * len(loader)) / len(loader))
        candidate = Candidate(base_lr)
        bar = tqdm(
            range(epochs),
            desc=f"finetune {encoder.name} (lr {base_lr:.2g})",
            unit="epoch",
            disable=not (ctx.progress and distributed.is_main()),
        )
        for epoch in bar:
            model.train()
            loader.batch_sampler.set_epoch(epoch)
            epoch_started, epoch_steps = time.perf_counter(), 0
            epoch_loss = torch.zeros((), device=device)
            grad_norms = torch.zeros((), device=device)
            for batch in loader:
                batch = batch.to(device, non_blocking=True)
                scheduler.step_update(candidate.steps)
                with autocast(device):
                    loss = known_bce(training_model(batch.signals, batch.lead_mask).float(), batch.labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norms += torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip).detach()
                optimizer.step()
                candidate.steps += 1
                epoch_loss += loss.detach()
                epoch_steps += 1
            # the log interval of fine-tuning is the epoch, where validation happens anyway
            train_loss = distributed.mean_across_ranks(epoch_loss).item() / max(epoch_steps, 1)
            try:
                check_finite(
                    "fine-tuning",
                    candidate.steps,
                    train_loss,
                    "lower the learning rate (--set finetune.optim.base_lr=... or finetune.lr_grid=...)",
                    candidate.history,  # the validation curve up to the divergence, for the record
                )
            except NonFiniteLossError as exc:
                candidate.failure = exc
                break
            candidate.train_loss_history.append(train_loss)
            throughput = epoch_steps * batch_size / max(time.perf_counter() - epoch_started, 1e-9)
            val_scores, val_labels = self.predict(ctx, model, ctx.arrays.splits["val"], "val")
            val_auroc = macro_auroc(val_labels, val_scores)
            candidate.history.append(val_auroc)
            ctx.monitor.log(
                step_offset + candidate.steps,
                {
                    "finetune/train_loss": train_loss,
                    "finetune/val_macro_auroc": val_auroc,
                    "finetune/lr": max_lr(optimizer),
                    "finetune/grad_norm": grad_norms.item() / max(epoch_steps, 1),  # before clipping
                    "finetune/throughput_ecgs_per_s": throughput,
                },
            )
            bar.set_postfix(val_auroc=f"{val_auroc:.4f}")
            if candidate.state is None or score(val_auroc) > score(candidate.val_macro_auroc):
                candidate.val_macro_auroc, candidate.best_epoch = val_auroc, epoch
                candidate.state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
            elif epoch - max(candidate.best_epoch, warmup_epochs - 1) >= recipe.patience:
                break
        bar.close()
        return candidate

    def predict(self, ctx: CellContext, model: nn.Module, indices: np.ndarray, split: str):
        """Sigmoid scores and labels of ``indices`` (centred windows, evaluation mode)."""
        model.eval()
        logits, labels = run_inference(
            model,
            ctx.arrays,
            indices,
            ctx.method.input_spec.window,
            256,
            ctx.device,
            f"finetune {ctx.method.name} [{split}]",
            ctx.progress,
            ctx.lead_subset,
        )
        return torch.sigmoid(logits).numpy(), labels

    def initial_probe(self, ctx: CellContext) -> FittedProbe:
        """The linear probe of the encoder before fine-tuning, on the features the head reads
        (``readout`` of the cached readout inputs the linear probe also uses)."""
        cfg, method = self.config.probe, ctx.method
        inputs = {split: cached_readout_inputs(ctx, split, cfg.batch_size) for split in ("train", "val")}
        with torch.no_grad():
            method.eval()
            feats = {split: (method.readout(x), y) for split, (x, y) in inputs.items()}
        return fit_probe(feats["train"], feats["val"], cfg, ctx.progress)
