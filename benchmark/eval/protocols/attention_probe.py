"""Frozen attention-pooling probe: a learned query attends over the frozen encoder's tokens.

The second frozen protocol of docs/design.md, as in the harmonised ECG foundation-model benchmark
(Al-Masud, Strodthoff et al., ICLR 2026: "frozen + attention pooling") and the attentive
probes of V-JEPA/AIM. Unlike the linear probe it does not depend on the method's choice of a
pooled vector: it reads the last layer's tokens (``Encoded.hidden_states[layer]``), extracted
once per split and cached (N x tokens x width float32 in memory), standardised per channel
with training statistics, then trains timm ``AttentionPoolLatent`` (one latent query,
multi-head cross-attention + MLP) -> linear head with :func:`benchmark.nn.frozen_head.fit_frozen_head` (early stopping on validation macro
AUROC). Tokens of missing leads are whatever the method returns for them (zeros or context).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from timm.layers import AttentionPoolLatent
from torch import nn

from benchmark.config import require_positive
from benchmark.eval.protocol import CellContext, Prediction, Protocol, ProtocolOutput, run_inference
from benchmark.nn.frozen_head import FrozenHeadConfig, fit_frozen_head, predict_scores
from benchmark.registry import PROTOCOLS


@dataclass
class AttentionProbeConfig:
    num_heads: int = 4  # of the pooling attention; must divide the token width
    mlp_ratio: float = 4.0
    layer: int = -1  # index into the method's hidden states: -1 = last layer
    batch_size: int = 256  # token extraction
    train: FrozenHeadConfig = field(default_factory=FrozenHeadConfig)

    def __post_init__(self):
        require_positive(self, "num_heads", "mlp_ratio", "batch_size")


class AttentionPoolHead(nn.Module):
    def __init__(self, width: int, n_labels: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        if width % num_heads:
            raise ValueError(
                f"attention_probe: token width {width} is not divisible by num_heads={num_heads}; "
                f"set --set attention_probe.num_heads=... to a divisor of {width}"
            )
        self.pool = AttentionPoolLatent(width, num_heads=num_heads, mlp_ratio=mlp_ratio, norm_layer=nn.LayerNorm)
        self.head = nn.Linear(width, n_labels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(tokens.float()))


@PROTOCOLS.register("attention_probe")
class AttentionProbe(Protocol):
    summary = "Frozen encoder tokens + attention-pooling head (timm AttentionPoolLatent), early stopping on val"
    kind = "frozen"
    Config = AttentionProbeConfig

    def run(self, ctx: CellContext) -> ProtocolOutput:
        cfg, arrays, method = self.config, ctx.arrays, ctx.method
        method.to(ctx.device).eval()

        def tokens(signals: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
            return method.hidden_states(signals, lead_mask)[cfg.layer]

        data = {}
        for split in ("train", "val", "test"):

            def extract(indices: np.ndarray, split: str = split) -> tuple[torch.Tensor, np.ndarray]:
                return run_inference(
                    tokens,
                    arrays,
                    indices,
                    method.input_spec.window,
                    cfg.batch_size,
                    ctx.device,
                    f"tokens {method.name} [{split}]",
                    ctx.progress,
                    ctx.lead_subset,
                )

            x, y = ctx.split_outputs(split, f"hidden[{cfg.layer}]", extract)
            data[split] = (x.to(ctx.device), torch.from_numpy(y).to(ctx.device))
        # per-channel standardisation with training statistics, as the linear probe's: hidden states
        # are pre-norm residual streams of any scale, and a per-token LayerNorm would erase the
        # token magnitudes that carry information
        mean = data["train"][0].mean(dim=(0, 1))
        std = data["train"][0].std(dim=(0, 1)).clamp_min(1e-6)
        data = {split: ((x - mean) / std, y) for split, (x, y) in data.items()}
        n_tokens, width = data["train"][0].shape[1:]
        head = AttentionPoolHead(width, len(arrays.label_names), cfg.num_heads, cfg.mlp_ratio).to(ctx.device)
        fitted = fit_frozen_head(
            head, data["train"], data["val"], cfg.train, ctx.seed, ctx.progress, desc=f"attention probe {method.name}"
        )
        scores = predict_scores(fitted.head, data["test"][0])
        prediction = Prediction(
            data["test"][1].cpu().numpy(), scores, np.asarray(arrays.record_ids[arrays.splits["test"]])
        )
        return ProtocolOutput(
            prediction,
            {
                "val_macro_auroc": fitted.val_macro_auroc,
                "best_epoch": fitted.best_epoch,
                "epochs_run": len(fitted.history),
                "n_train": int(len(ctx.train_records)),
                "tokens": int(n_tokens),
                "width": int(width),
            },
        )
