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
that was not pretrained (``scratch``) keeps MAE's head on raw features: it has no features to
preserve, and its random features vary across records by ~1e-3 of their size, so standardising
them amplifies its first updates until the scores saturate.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from benchmark.config import require_positive
from benchmark.data.loader import make_loader
from benchmark.eval.metrics import macro_auroc
from benchmark.eval.protocol import CellContext, Prediction, Protocol, ProtocolOutput, run_inference
from benchmark.eval.protocols.linear import FittedProbe, LinearProbeConfig, cached_readout_inputs, fit_probe
from benchmark.method.base import Method
from benchmark.registry import PROTOCOLS
from benchmark.train import distributed
from benchmark.train.monitor import check_finite, max_lr
from benchmark.train.optim import OptimConfig, build_optimizer
from benchmark.train.runtime import autocast

HEAD_INITS = ("linear_probe", "random")


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
    patience: int = 3  # epochs without validation improvement before stopping
    head_init: str = "linear_probe"  # or "random" (MAE: head weights of std 2e-5)
    probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)  # the initial probe's fit

    def __post_init__(self):
        require_positive(self, "epochs", "batch_size", "patience")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")


class FeatureStandardiser(nn.Module):
    """Per-dimension standardisation: batch statistics in training (over all torchrun processes,
    so DDP equals one process; ``SyncBatchNorm`` runs on CUDA only), running statistics in
    evaluation — ``BatchNorm1d(affine=False)``. Starts from the training split's statistics,
    so an untrained model scores exactly like the probe it was initialised from."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, momentum: float = 0.1, min_std: float = 1e-6):
        super().__init__()
        self.momentum, self.min_std = momentum, min_std  # the probe's clamp, not an additive eps
        self.register_buffer("running_mean", mean.detach().clone())
        self.register_buffer("running_var", std.detach().clone() ** 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return (x - self.running_mean) / self.running_var.sqrt().clamp_min(self.min_std)
        n = distributed.sum_across_ranks(torch.tensor(float(len(x)), device=x.device))
        mean = distributed.sum_across_ranks(x.sum(0)) / n
        centred = x - mean
        var = distributed.sum_across_ranks(centred.pow(2).sum(0)) / n
        with torch.no_grad():
            unbiased = var * n / (n - 1).clamp_min(1)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(unbiased, self.momentum)
        return centred / var.sqrt().clamp_min(self.min_std)


class Classifier(nn.Module):
    """Encoder + standardiser + linear head; ``group_matcher`` gives timm the encoder's layer ids
    (head last). ``init`` (the initial encoder's probe) gives the standardiser's starting
    statistics and, unless ``probe_head`` is False, the head's weights; without it the head reads
    raw features and starts near zero (MAE)."""

    def __init__(self, encoder: Method, n_labels: int, init: FittedProbe | None = None, probe_head: bool = True):
        super().__init__()
        self.encoder = encoder
        self.standardise = nn.Identity() if init is None else FeatureStandardiser(init.mean.cpu(), init.std.cpu())
        self.head = nn.Linear(encoder.feature_dim, n_labels)
        if init is not None and probe_head:
            with torch.no_grad():
                self.head.weight.copy_(init.weight.T)
                self.head.bias.copy_(init.bias)
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
        encoder = ctx.rebuild(drop_path=cfg.drop_path)
        probe = self.initial_probe(ctx) if encoder.pretrains else None
        model = Classifier(encoder, len(arrays.label_names), probe, cfg.head_init == "linear_probe").to(device)
        training_model = model
        if distributed.world_size() > 1:  # each rank trains on its share of every batch
            training_model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        window = encoder.input_spec.window
        batch_size = min(cfg.batch_size, len(ctx.train_indices))  # tiny label-efficiency subsets
        loader = make_loader(
            arrays,
            ctx.train_indices,
            window,
            max(1, batch_size // distributed.world_size()),
            train=True,
            seed=ctx.seed,
            pin_memory=device.type == "cuda",
            lead_subset=ctx.lead_subset,
            rank=distributed.rank(),
            world_size=distributed.world_size(),
        )
        optim = cfg.optim if encoder.pretrains else replace(cfg.optim, layer_decay=1.0)
        optimizer, scheduler = build_optimizer(
            model, optim, batch_size, cfg.epochs * len(loader), encoder.no_weight_decay
        )

        def predict(indices, split):
            model.eval()
            logits, labels = run_inference(
                model,
                arrays,
                indices,
                window,
                256,
                device,
                f"finetune {encoder.name} [{split}]",
                ctx.progress,
                ctx.lead_subset,
            )
            return torch.sigmoid(logits).numpy(), labels

        best_auroc, best_state, best_epoch, history, step = -np.inf, None, -1, [], 0
        train_loss_history: list[float] = []
        bar = tqdm(
            range(cfg.epochs),
            desc=f"finetune {encoder.name}",
            unit="epoch",
            disable=not (ctx.progress and distributed.is_main()),
        )
        ctx.monitor.start(0, cfg.epochs * len(loader))
        for epoch in bar:
            model.train()
            loader.batch_sampler.set_epoch(epoch)
            epoch_started, epoch_steps = time.perf_counter(), 0
            epoch_loss = torch.zeros((), device=device)
            grad_norms = torch.zeros((), device=device)
            for batch in loader:
                batch = batch.to(device, non_blocking=True)
                scheduler.step_update(step)
                with autocast(device):
                    loss = F.binary_cross_entropy_with_logits(
                        training_model(batch.signals, batch.lead_mask).float(), batch.labels
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norms += torch.nn.utils.clip_grad_norm_(model.parameters(), optim.grad_clip).detach()
                optimizer.step()
                epoch_loss += loss.detach()
                step += 1
                epoch_steps += 1
            # the log interval of fine-tuning is the epoch, where validation happens anyway
            train_loss = distributed.mean_across_ranks(epoch_loss).item() / max(epoch_steps, 1)
            check_finite(
                "fine-tuning",
                step,
                train_loss,
                "lower the learning rate (--set finetune.optim.base_lr=...)",
                history,  # the validation curve up to the divergence, for the record
            )
            train_loss_history.append(train_loss)
            throughput = epoch_steps * batch_size / max(time.perf_counter() - epoch_started, 1e-9)
            val_scores, val_labels = predict(arrays.splits["val"], "val")
            val_auroc = macro_auroc(val_labels, val_scores)
            history.append(val_auroc)
            ctx.monitor.log(
                step,
                {
                    "finetune/train_loss": train_loss,
                    "finetune/val_macro_auroc": val_auroc,
                    "finetune/lr": max_lr(optimizer),
                    "finetune/grad_norm": grad_norms.item() / max(epoch_steps, 1),  # before clipping
                    "finetune/throughput_ecgs_per_s": throughput,
                },
            )
            bar.set_postfix(val_auroc=f"{val_auroc:.4f}")
            if val_auroc > best_auroc:
                best_auroc, best_epoch = val_auroc, epoch
                best_state = copy.deepcopy({k: v.cpu() for k, v in model.state_dict().items()})
            elif epoch - best_epoch >= cfg.patience:
                break
        bar.close()
        model.load_state_dict(best_state)
        scores, labels = predict(arrays.splits["test"], "test")
        prediction = Prediction(labels, scores, np.asarray(arrays.record_ids[arrays.splits["test"]]))
        probe_details = {} if probe is None else {"probe_l2": probe.l2, "probe_val_macro_auroc": probe.val_macro_auroc}
        return ProtocolOutput(
            prediction,
            {
                "best_epoch": best_epoch,
                "epochs_run": len(history),
                "val_macro_auroc": best_auroc,
                "val_history": history,  # per epoch, as train_loss_history
                "train_loss_history": train_loss_history,
                "n_train": int(len(ctx.train_indices)),
                **probe_details,
            },
        )

    def initial_probe(self, ctx: CellContext) -> FittedProbe:
        """The linear probe of the encoder before fine-tuning, on the features the head reads
        (``readout`` of the cached readout inputs the linear probe also uses)."""
        cfg, method = self.config.probe, ctx.method
        inputs = {split: cached_readout_inputs(ctx, split, cfg.batch_size) for split in ("train", "val")}
        with torch.no_grad():
            method.eval()
            feats = {split: (method.readout(x), y) for split, (x, y) in inputs.items()}
        return fit_probe(feats["train"], feats["val"], cfg, ctx.progress)
