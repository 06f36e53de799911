"""Linear probe: frozen encoder, features extracted once, L2-regularised logistic head per
label, regularisation strength chosen on validation macro AUROC.

Features are standardised with training-split statistics, the role of MAE's
BatchNorm(affine=False) before its linear head (He et al. 2022). The head is fitted full-batch
with L-BFGS (exact and deterministic, and it runs on a GPU for MIMIC-sized feature sets);
the grid goes from strong to weak regularisation with warm starts.

A method with a trainable readout (``Method.downstream_only``, e.g. ECG-Soup's PMA gate over
layers) caches its ``readout_inputs`` instead and fits that readout first (``fit_readout``);
the probe then runs unchanged on ``readout``'s output. For every other method both are the
identity and the features are ``features``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from benchmark.config import require_positive
from benchmark.eval.protocol import CellContext, Prediction, Protocol, ProtocolOutput, extract_features
from benchmark.eval.tuning import Tuning
from benchmark.nn.losses import known_bce, known_per_label
from benchmark.nn.metrics import macro_auroc
from benchmark.registry import PROTOCOLS


@dataclass
class LinearProbeConfig:
    l2_grid: tuple[float, ...] = (100.0, 10.0, 1.0, 0.1, 1e-2, 1e-3, 1e-4)  # = 1/C, strong to weak
    #: strengths the search may add, one grid step (×10 here) at a time, beyond the edge the
    #: choice sits on (:mod:`benchmark.eval.tuning`); a fit costs seconds, so the default allows 1e6 to 1e-8
    max_extensions: int = 4
    max_iter: int = 300
    batch_size: int = 256  # feature extraction

    def __post_init__(self):
        if not self.l2_grid or min(self.l2_grid) < 0 or len(set(self.l2_grid)) < len(self.l2_grid):
            raise ValueError(f"l2_grid must hold distinct non-negative strengths, got {self.l2_grid}")
        if self.max_extensions < 0:
            raise ValueError(f"max_extensions must be >= 0, got {self.max_extensions}")
        require_positive(self, "max_iter", "batch_size")


def fit_logistic(
    x: torch.Tensor, y: torch.Tensor, l2: float, max_iter: int, init: tuple[torch.Tensor, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per label: mean BCE + l2·||w||² / (2N), bias unpenalised — scikit-learn's
    LogisticRegression objective divided by C·N, so ``l2`` = 1/C. All labels at once; N is the
    number of records that know the label (``y`` NaN where unknown: benchmark/nn/losses.py), so a
    label is fitted on its own records as scikit-learn would fit it."""
    known = known_per_label(y)
    weight = torch.zeros(x.shape[1], y.shape[1], device=x.device) if init is None else init[0].clone()
    bias = torch.zeros(y.shape[1], device=x.device) if init is None else init[1].clone()
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimizer.zero_grad()
        loss = known_bce(x @ weight + bias, y, per_label=True).sum() + 0.5 * l2 * (weight.pow(2).sum(0) / known).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


@dataclass
class FittedProbe:
    """A logistic head on standardised features: ``logits(x) = ((x - mean) / std) @ weight + bias``."""

    mean: torch.Tensor
    std: torch.Tensor
    weight: torch.Tensor  # (features, labels)
    bias: torch.Tensor
    l2: float
    val_macro_auroc: float
    tuning: Tuning = field(default_factory=lambda: Tuning("l2"))  # every grid point's validation score

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std @ self.weight + self.bias


def fit_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    cfg: LinearProbeConfig,
    progress: bool = True,
) -> FittedProbe:
    """Standardise with training statistics, fit the ``l2_grid`` from strong to weak
    regularisation, extended beyond an edge choice until it is bracketed, each fit warm-started
    from the fit of the nearest strength tried, and keep the fit with the best validation macro
    AUROC (:class:`~benchmark.eval.tuning.Tuning`: no test record takes part)."""
    mean = train[0].mean(0)
    std = train[0].std(0).clamp_min(1e-6)
    x_train, x_val = (train[0] - mean) / std, (val[0] - mean) / std
    tuning, best = Tuning("l2", cfg.max_extensions), None
    fits: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
    for l2 in tqdm(tuning.values(cfg.l2_grid), desc="linear probe", disable=not progress, leave=False):
        nearest = min(fits, key=lambda fitted: abs(np.log((fitted + 1e-12) / (l2 + 1e-12))), default=None)
        init = None if nearest is None else fits[nearest]
        params = fits[l2] = fit_logistic(x_train, train[1], l2, cfg.max_iter, init=init)
        val_auroc = macro_auroc(val[1].cpu().numpy(), (x_val @ params[0] + params[1]).cpu().numpy())
        if tuning.add(l2, val_auroc) or best is None:
            best = FittedProbe(mean, std, *params, l2=l2, val_macro_auroc=val_auroc, tuning=tuning)
    assert best is not None  # the grid is never empty (LinearProbeConfig)
    return best


def cached_readout_inputs(ctx: CellContext, split: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's frozen ``readout_inputs`` and labels on the cell's device, extracted once per
    pretrained model and shared by every protocol that reads them."""
    method = ctx.method
    x, y = ctx.split_outputs(
        split,
        "readout_inputs",
        lambda indices: extract_features(
            method,
            ctx.arrays,
            indices,
            batch_size,
            ctx.device,
            split,
            ctx.progress,
            ctx.lead_subset,
            fn=method.readout_inputs,
        ),
    )
    return x.to(ctx.device), torch.from_numpy(y).to(ctx.device)


@PROTOCOLS.register("linear")
class LinearProbe(Protocol):
    summary = "Frozen encoder + L2 logistic head (strength chosen on validation macro AUROC)"
    kind = "frozen"
    Config = LinearProbeConfig

    def run(self, ctx: CellContext) -> ProtocolOutput:
        cfg, arrays, method = self.config, ctx.arrays, ctx.method
        feats = {split: cached_readout_inputs(ctx, split, cfg.batch_size) for split in ("train", "val", "test")}
        # a method's trainable readout (PMA's gate) is fitted first; for all others a no-op
        readout_details = method.fit_readout(feats["train"], feats["val"], ctx.seed, ctx.progress)
        with torch.no_grad():
            method.eval()
            feats = {k: (method.readout(x), y) for k, (x, y) in feats.items()}
        probe = fit_probe(feats["train"], feats["val"], cfg, ctx.progress)
        x_test, y_test = feats["test"]
        scores = torch.sigmoid(probe.logits(x_test)).cpu().numpy()
        prediction = Prediction(y_test.cpu().numpy(), scores, np.asarray(arrays.record_ids[arrays.splits["test"]]))
        return ProtocolOutput(
            prediction,
            {
                "l2": probe.l2,
                "val_macro_auroc": probe.val_macro_auroc,
                "tuning": probe.tuning.record(),
                "n_train": int(len(ctx.train_records)),
                "feature_dim": int(x_test.shape[1]),
                **readout_details,
            },
        )
