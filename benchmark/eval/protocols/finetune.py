"""Fine-tuning: the whole encoder plus a linear head, trained end to end, early stopping on
validation macro AUROC; the best epoch's weights are tested.

**One recipe for every method** (issue 21) [choice]. A pretrained encoder and a network trained
from random init on the labels alone (``Method.supervised_only``: ``scratch``, ``xresnet1d``) are
fine-tuned by the same :class:`FinetuneConfig`: the same most epochs per learning-rate
candidate (``epochs``), the same warmup (``optim.warmup_frac`` of those epochs) and half-cycle
cosine schedule, the same early-stopping rule (``patience`` epochs without a validation
improvement, counted once the warmup is over), batch size, AdamW settings, stochastic depth and
learning-rate grid. Two settings depend on the initial weights, not on the method, and are
documented as such: layer-wise lr decay (``optim.layer_decay``, MAE/BEiT fine-tuning, He et al.
2022) applies to a pretrained encoder only — from random init there are no pretrained lower
layers to keep, so every layer gets the full learning rate — and the head's start (below).

**The compute rule is equal epochs, with no FLOP cap** [choice], for every method alike
(:data:`COMPUTE_RULE`, recorded with every result). The alternative, a hard cap counting the
pretraining FLOPs of the pretrained methods, was what this module did before: the supervised
references were allowed LAMAE's pretraining plus one fine-tuning run per candidate and, with a
30-epoch floor, trained 30 to 69 epochs against the pretrained encoders' 4 (the ``cpu`` preset),
so "lamae fine-tuned is below scratch" compared a barely-moved encoder with a converged model.
A cap that binds also turns each architecture's FLOPs per record into a different number of
epochs of the same schedule (``xresnet1d`` spends 2× LAMAE's FLOPs per record), and one that never
binds is no rule. Equal epochs with early stopping on validation, and a budget large enough that
early stopping rather than the budget ends most candidates, compare what each method's initial
weights reach under one recipe — what pretraining contributes. Compute is still measured, not
capped: every fine-tuning table shows each method's pretraining FLOPs, its fine-tuning FLOPs
over all learning-rate candidates and the total (``compute.downstream``), so compute-matched
readings stay possible.

**The head** is the same module for every method: a linear layer on features standardised per
dimension (BatchNorm without affine, the layer MAE puts before its linear-probe head). Its start
follows the initial weights [choice]: a pretrained encoder's head starts from the linear probe of
that encoder (``head_init="linear_probe"``, LP-FT: Kumar et al. 2022, "Fine-Tuning can Distort
Pretrained Features"), a random encoder's from the labels' prior (``supervised_head_init=
"prior"``: standardised with batch statistics from the first training batch on, weights of std
0.02 as timm's ViT, each label's bias at the log-odds of its training prevalence — the prior
initialisation of Lin et al. 2017, "Focal Loss for Dense Object Detection", Sec. 4.1). Both are
fitted from the same training labels and the initial encoder alone, and the prior is the limit of
the linear probe as its L2 strength grows (weights → 0, biases at the prevalences' log-odds), so
each method starts from the probe of its own initial features at the strength that suits them.
Why not one start for all: LP-FT from a random encoder, whose features vary across records by
~1e-3 of their size, fits a probe with large weights on standardised noise and saturated the
scores (``scratch`` at validation macro AUROC 0.585, cpu preset, synthetic default, seed 0);
the prior start on a pretrained encoder throws its probe away and lets a random head's gradients
distort the pretrained features in the first steps, the failure LP-FT was designed against. MAE's
own head (raw features, weights of std 2e-5, zero bias: ``"random"``) assumes ~100 epochs: from it
the first hundreds of steps only learn the prevalences (AdamW moves a bias by about the learning
rate per step) and LAMAE's transformer, whose CLS readout varies across records by ~4e-4 of its
size at random init, stayed at the constant prediction. Measured on the synthetic default (seed
0, 150 steps of batch 64, prior bias and std-0.02 weights): on raw features the training loss
stayed at the prevalences' level and the features' spread did not grow at lr 5e-4 (it fell 4- and
20-fold at 1e-3 and 3e-3); on standardised features the loss fell below that level (0.278 against
0.319 on the same batch at step 120) and the spread grew 40-fold.

**Equal tuning** (issues 12 and 21): the learning rate of every method is chosen on validation
from the same grid, ``lr_grid`` — multiples of ``optim.base_lr`` — each candidate trained with the
same schedule and early stopping, the best validation macro AUROC kept; a choice at the grid's edge
extends the grid one step in that direction, at most ``max_lr_extensions`` times
(:class:`~benchmark.eval.tuning.Tuning`). The values tried, every candidate's score, the
extensions and the choice are recorded, and the test split is scored once, with the chosen
candidate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from timm.layers import trunc_normal_
from torch import nn

from benchmark.config import require_positive
from benchmark.data.loader import Batch, epochs_on, make_loader
from benchmark.eval.protocol import CellContext, Prediction, Protocol, ProtocolOutput, run_inference
from benchmark.eval.protocols.linear import FittedProbe, LinearProbeConfig, cached_readout_inputs, fit_probe
from benchmark.eval.tuning import Tuning
from benchmark.method.base import Method
from benchmark.nn import distributed
from benchmark.nn.losses import known_bce
from benchmark.nn.metrics import macro_auroc
from benchmark.nn.monitor import NonFiniteLossError
from benchmark.nn.training import EarlyStopping, OptimiserStep, TrainingLoop, Validation
from benchmark.registry import PROTOCOLS
from benchmark.train.flops import supervised_step_flops, synthetic_batch
from benchmark.train.optim import OptimConfig, build_optimizer
from benchmark.train.runtime import set_seed

log = logging.getLogger("benchmark")

#: "linear_probe": features standardised with the training split's statistics and the initial
#: encoder's probe (LP-FT); "random": raw features, MAE's near-zero head; "prior": features
#: standardised with batch statistics, weights of std 0.02 and biases at the training prevalences'
#: log-odds (a network trained from random init)
HEAD_INITS = ("linear_probe", "random", "prior")
#: the compute rule of every fine-tuning table, for every method (module docstring)
COMPUTE_RULE = "equal epochs, no FLOP cap"


@dataclass
class FinetuneConfig:
    """The one fine-tuning recipe of every method (module docstring): ``epochs``, ``patience``,
    ``optim`` (its ``warmup_frac`` of the epochs), ``drop_path``, ``batch_size`` and the
    learning-rate grid apply to pretrained and supervised methods alike; ``optim.layer_decay``
    applies to pretrained encoders only, and the head starts from ``head_init`` for a pretrained
    encoder and from ``supervised_head_init`` for one trained from random init."""

    epochs: int = 50  # the most a candidate trains; early stopping usually ends it sooner
    batch_size: int = 64
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            base_lr=1e-3, weight_decay=0.05, beta1=0.9, beta2=0.999, warmup_frac=0.1, layer_decay=0.75
        )
    )
    drop_path: float = 0.1
    patience: int = 10  # epochs without validation improvement before stopping (after the warmup)
    head_init: str = "linear_probe"  # a pretrained encoder's head start (HEAD_INITS)
    #: the head start of a network trained from random init (HEAD_INITS); "linear_probe" is LP-FT
    #: from the random encoder, which saturated scratch's scores (module docstring)
    supervised_head_init: str = "prior"
    probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)  # the initial probe's fit
    #: learning-rate candidates, as multiples of optim.base_lr: the same grid for every method
    lr_grid: tuple[float, ...] = (0.3, 1.0, 3.0)
    #: learning rates the search may add, one grid step at a time, beyond the edge the choice
    #: sits on (:mod:`benchmark.eval.tuning`); each is a full training run
    max_lr_extensions: int = 3

    def __post_init__(self):
        require_positive(self, "epochs", "batch_size", "patience")
        for name in ("head_init", "supervised_head_init"):
            if getattr(self, name) not in HEAD_INITS:
                raise ValueError(f"{name} must be one of {', '.join(HEAD_INITS)}, got {getattr(self, name)!r}")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if not self.lr_grid or min(self.lr_grid) <= 0 or len(set(self.lr_grid)) < len(self.lr_grid):
            raise ValueError(f"lr_grid must hold distinct positive multiples of base_lr, got {self.lr_grid}")
        if self.max_lr_extensions < 0:
            raise ValueError(f"max_lr_extensions must be >= 0, got {self.max_lr_extensions}")


@dataclass(frozen=True)
class Recipe:
    """What one method's candidates are trained with: the config's recipe, whose two
    initialisation-specific settings (layer decay, head start) follow whether the encoder was
    pretrained. Everything that sets the budget — epochs, patience, warmup, compute rule — is
    the config's, the same for every method (:meth:`budget`)."""

    epochs: int
    patience: int
    drop_path: float
    optim: OptimConfig
    pretrained: bool
    head_init: str  # HEAD_INITS

    @property
    def probe_head(self) -> bool:
        """Whether the head starts from the initial encoder's linear probe (LP-FT)."""
        return self.head_init == "linear_probe"

    @classmethod
    def of(cls, cfg: FinetuneConfig, method: Method | type[Method]) -> Recipe:
        if method.supervised_only():  # random init: no pretrained layers to keep
            return cls(
                cfg.epochs,
                cfg.patience,
                cfg.drop_path,
                replace(cfg.optim, layer_decay=1.0),
                False,
                cfg.supervised_head_init,
            )
        return cls(cfg.epochs, cfg.patience, cfg.drop_path, cfg.optim, True, cfg.head_init)

    def warmup_epochs(self, steps_per_epoch: int) -> int:
        """Epochs that hold a warmup step (patience is counted after them)."""
        return math.ceil(int(self.optim.warmup_frac * self.epochs * steps_per_epoch) / steps_per_epoch)

    def budget(self, steps_per_epoch: int) -> dict:
        """The budget and the stopping rule, recorded with every result (and equal for every
        method of a fine-tuning table)."""
        return {
            "compute_rule": COMPUTE_RULE,
            "max_epochs": self.epochs,
            "patience": self.patience,
            "warmup_epochs": self.warmup_epochs(steps_per_epoch),
            "early_stopping": "best validation macro AUROC; stop after `patience` epochs without improvement, "
            "counted after the warmup",
        }


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
            return (x - self.running_mean) / self.std(self.running_var)
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
        return centred / self.std(var)

    def std(self, var: torch.Tensor) -> torch.Tensor:
        """max(sqrt(var), min_std), clamped before the root: a feature constant over the batch (var
        exactly 0, e.g. a ReLU channel silent on a 6-record label-efficiency subset) would
        otherwise send 0 x inf = NaN back through sqrt's gradient and into every weight."""
        return var.clamp_min(self.min_std**2).sqrt()


class Classifier(nn.Module):
    """Encoder + standardiser + linear head; ``group_matcher`` gives timm the encoder's layer ids
    (head last). The head starts (``HEAD_INITS``) from ``init``, the initial encoder's probe
    (its standardisation statistics and weights: LP-FT), or, given each label's training
    prevalence ``label_prior``, as a supervised network's head on features standardised with
    batch statistics (weights of std 0.02, biases at the prevalences' log-odds; module
    docstring), or else near zero on raw features (MAE)."""

    def __init__(
        self, encoder: Method, n_labels: int, init: FittedProbe | None = None, label_prior: np.ndarray | None = None
    ):
        super().__init__()
        self.encoder = encoder
        self.standardise: nn.Module = nn.Identity()
        self.head = nn.Linear(encoder.feature_dim, n_labels)
        if init is not None:
            self.standardise = FeatureStandardiser(init.mean.cpu(), init.std.cpu())
            with torch.no_grad():
                self.head.weight.copy_(init.weight.T)
                self.head.bias.copy_(init.bias)
        elif label_prior is not None:
            self.standardise = FeatureStandardiser(None, None, dim=encoder.feature_dim)
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
        probe = self.initial_probe(ctx) if recipe.probe_head else None
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

        tuning, best, samples, runs = Tuning("base_lr", cfg.max_lr_extensions), None, 0, []
        failures = []
        most_candidates = len(cfg.lr_grid) + cfg.max_lr_extensions
        ctx.monitor.start(0, most_candidates * recipe.epochs * len(loader))  # at most: early stopping ends sooner
        for base_lr in tuning.values([recipe.optim.base_lr * multiplier for multiplier in cfg.lr_grid]):
            candidate = self.train(ctx, recipe, base_lr, probe, loader, batch_size, samples // batch_size)
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
        model = Classifier(encoder, len(arrays.label_names), probe, self.label_prior(ctx, recipe)).to(device)
        model.load_state_dict(best.state)
        scores, labels = self.predict(ctx, model, arrays.splits["test"], "test")
        prediction = Prediction(labels, scores, np.asarray(arrays.record_ids[arrays.splits["test"]]))
        probe_details = {} if probe is None else {"probe_l2": probe.l2, "probe_val_macro_auroc": probe.val_macro_auroc}
        return ProtocolOutput(
            prediction,
            {
                "initialisation": "pretrained" if recipe.pretrained else "random",
                "recipe": {
                    **recipe.budget(len(loader)),
                    "layer_decay": recipe.optim.layer_decay,
                    "head_init": recipe.head_init,
                },
                "tuning": {
                    **tuning.record(),
                    "lr_multipliers": [float(f"{lr / recipe.optim.base_lr:.12g}") for lr in tuning.grid],
                    "epochs_run": [n for n, _ in runs],
                    "best_epoch": [b for _, b in runs],
                    "diverged": [str(f.loss) for f in failures],
                },
                "best_epoch": best.best_epoch,
                "epochs_run": len(best.history),
                "val_macro_auroc": best.val_macro_auroc,
                "val_history": best.history,  # per epoch, as train_loss_history
                "train_loss_history": best.train_loss_history,
                "n_train": int(len(ctx.train_records)),
                **probe_details,
            },
            compute={"flops_per_sample": per_sample, "samples": samples, "flops": per_sample * samples},
        )

    @staticmethod
    def label_prior(ctx: CellContext, recipe: Recipe) -> np.ndarray | None:
        """Each label's prevalence among the records trained on that know it, for a ``prior`` head."""
        if recipe.head_init != "prior":
            return None
        targets = ctx.arrays.targets(ctx.train_records)
        known = ~np.isnan(targets)
        return np.where(known, targets, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)

    def train(
        self,
        ctx: CellContext,
        recipe: Recipe,
        base_lr: float,
        probe: FittedProbe | None,
        loader,
        batch_size: int,
        step_offset: int = 0,
    ) -> Candidate:
        """Train one learning-rate candidate from the cell's initial weights (the same seed, data
        order and head for every candidate) for at most ``recipe.epochs`` epochs, keeping its best
        validation epoch. A candidate whose training loss becomes non-finite stops there and keeps
        its failure (``step_offset``: the cell's steps before it, so the monitor's curves of
        successive candidates follow on)."""
        set_seed(ctx.seed)
        device = ctx.device
        encoder = ctx.rebuild(drop_path=recipe.drop_path)
        model = Classifier(encoder, len(ctx.arrays.label_names), probe, self.label_prior(ctx, recipe)).to(device)
        if distributed.world_size() > 1 and device.type == "cuda":  # BatchNorm (xresnet1d) over the global batch
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        training_model = distributed.data_parallel(model, device)
        optim = replace(recipe.optim, base_lr=base_lr)
        optimizer, scheduler = build_optimizer(
            model, optim, batch_size, recipe.epochs * len(loader), encoder.no_weight_decay
        )
        stopping = EarlyStopping(recipe.patience, min_epochs=recipe.warmup_epochs(len(loader)))

        def batch_loss(batch: Batch) -> torch.Tensor:
            return known_bce(training_model(batch.signals, batch.lead_mask).float(), batch.labels)

        def validate() -> float:
            scores, labels = self.predict(ctx, model, ctx.arrays.splits["val"], "val")
            return macro_auroc(labels, scores)

        loop = TrainingLoop(
            model,
            OptimiserStep(
                optimizer, model.parameters(), grad_clip=optim.grad_clip, schedule=scheduler, amp_device=device
            ),
            batch_loss,
            stage="fine-tuning",
            divergence_hint="lower the learning rate (--set finetune.optim.base_lr=... or finetune.lr_grid=...)",
            records_per_step=batch_size,
            prefix="finetune",
            monitor=ctx.monitor,
            monitor_offset=step_offset,
            validation=Validation(validate, stopping),
            progress=ctx.progress,
            desc=f"finetune {encoder.name} (lr {base_lr:.2g})",
        )
        failure = None
        try:
            loop.run(epochs_on(loader, device), len(loader), max_epochs=recipe.epochs)
        except NonFiniteLossError as exc:
            failure = exc
        return Candidate(
            base_lr,
            stopping.best_score,
            stopping.best_epoch,
            loop.history,
            [loss for _, loss in loop.loss_curve],
            loop.step,
            loop.best_state,
            failure,
        )

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
