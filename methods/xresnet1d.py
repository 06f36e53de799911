"""xresnet1d: the 1-D XResNet of the PTB-XL benchmark, trained supervised from random init.

Source: Strodthoff, Wagner, Schaeffter & Samek 2021, "Deep Learning for ECG Analysis:
Benchmarks and Insights from PTB-XL", IEEE JBHI 25:1519 [paper] — the xresnet1d family is
among the strongest models of its benchmark on every PTB-XL task; architecture and training
defaults read in its public code, helme/ecg_ptbxl_benchmarking (``code/models/xresnet1d.py``,
``basic_conv1d.py`` ``create_head1d``, ``fastai_model.py``) [code]. Written here in plain
torch (their code needs fastai v1).

From the code [code]:

* stem: three conv-BN-ReLU layers 12 -> 32 -> 32 -> 64 channels, kernel 5, the first with
  stride 2, then max-pooling (kernel 3, stride 2);
* four stages of bottleneck residual blocks (expansion 4: 1x1, kernel-5, 1x1 convolutions,
  BN after each, ReLU after the first two; hidden width 64 and output width 256 in *every*
  stage — the image model's 64/128/256/512 widths are commented out there), the first stage
  with stride 1, the others halving time in their first block; the shortcut average-pools
  (kernel 2, ceil mode) before a 1x1 conv + BN where the width changes; ReLU after the sum;
* xresnet1d101 = (3, 4, 23, 3) blocks (``layers``);
* head: concatenated adaptive max and average pooling -> BN -> dropout 0.25 -> linear to 128
  -> ReLU -> BN -> dropout 0.5 -> linear to the labels (``create_head1d`` with
  ``lin_ftrs_head=[128]``, ``ps_head=0.5``);
* initialisation as their ``fit`` leaves it: Kaiming-normal conv and linear weights with zero
  biases, every BatchNorm weight 1 and bias 0 (``weight_init`` is applied after the model's own
  init, so the zero-initialised last BN of a block is reset to 1).

[choice] items (config fields or the harness's):

* the last linear layer is the harness's classification head (the same for every method), so
  ``features`` is the 128-wide output of the head's hidden layer (after its BN and dropout);
* input: the preset's window (cpu: 5 s at 100 Hz), every method sees the same input; their
  code trains on random 2.5 s crops and takes the maximum over sliding windows at test time;
* training: the benchmark's fine-tuning recipe of every method (``benchmark/eval/protocols/finetune.py``:
  AdamW, warmup + cosine, learning rate chosen on validation from a grid that brackets it, early
  stopping on validation macro AUROC, the same epochs as every method, no layer decay, the
  labels' prior as the head's start), not their one-cycle schedule with Adam at lr 1e-2, weight
  decay 1e-2, batch 128 and 50 epochs;
* missing leads are zero-filled before the stem (a CNN over the lead axis has no set
  structure), so their signal never reaches the features;
* the transformer fields of the shared model size (dim, depth, heads, patch_s, decoder_*)
  do not apply; ``drop_path`` is not used (their code has no stochastic depth).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ecgbench import LEADS, METHODS, Encoded, InputSpec, Method, MethodConfig


@dataclass
class XResNet1dConfig(MethodConfig):
    layers: tuple[int, ...] = (3, 4, 23, 3)  # blocks per stage: xresnet1d101
    expansion: int = 4  # bottleneck blocks (1 = basic blocks, xresnet1d18/34)
    block_width: int = 64  # hidden width of every block; the output is block_width * expansion
    stem: tuple[int, ...] = (32, 32, 64)
    kernel_size: int = 5
    stem_kernel_size: int = 5
    head_hidden: int = 128
    head_dropout: float = 0.5  # the hidden layer's; the pooled features get half of it

    def __post_init__(self):
        super().__post_init__()
        if not self.layers or min(self.layers) < 1 or not self.stem or min(self.stem) < 1:
            raise ValueError(f"layers and stem need positive entries, got {self.layers}, {self.stem}")
        for name in ("expansion", "block_width", "kernel_size", "stem_kernel_size", "head_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.kernel_size % 2 == 0 or self.stem_kernel_size % 2 == 0:
            raise ValueError("kernel sizes must be odd (same padding)")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """Conv (no bias, same padding) -> BN (-> ReLU): fastai's ``ConvLayer`` with ``bn_1st``."""
    layers = [
        nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False),
        nn.BatchNorm1d(c_out),
    ]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Bottleneck (expansion > 1) or basic residual block with an average-pooling shortcut."""

    def __init__(self, c_in: int, width: int, c_out: int, expansion: int, kernel: int, stride: int):
        super().__init__()
        if expansion == 1:
            convs = [conv_bn(c_in, width, kernel, stride), conv_bn(width, c_out, kernel, relu=False)]
        else:
            convs = [
                conv_bn(c_in, width, 1),
                conv_bn(width, width, kernel, stride),
                conv_bn(width, c_out, 1, relu=False),
            ]
        self.convs = nn.Sequential(*convs)
        shortcut: list[nn.Module] = [nn.AvgPool1d(2, ceil_mode=True)] if stride != 1 else []
        if c_in != c_out:
            shortcut.append(conv_bn(c_in, c_out, 1, relu=False))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


@METHODS.register("xresnet1d")
class XResNet1d(Method):
    summary = "xresnet1d101 CNN of the PTB-XL benchmark (Strodthoff et al. 2021), supervised from random init"
    Config = XResNet1dConfig
    pretrains = False
    evaluations = frozenset({"finetune"})
    uses_model_size = False
    no_weight_decay = ()

    def __init__(self, config: XResNet1dConfig, input_spec: InputSpec):
        super().__init__(config, input_spec)
        c = config
        widths = [len(LEADS), *c.stem]
        self.stem = nn.Sequential(
            *(
                conv_bn(widths[i], widths[i + 1], c.stem_kernel_size, stride=2 if i == 0 else 1)
                for i in range(len(c.stem))
            ),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        out = c.block_width * c.expansion
        stages, c_in = [], c.stem[-1]
        for s, n_blocks in enumerate(c.layers):
            blocks = []
            for b in range(n_blocks):
                stride = 2 if s > 0 and b == 0 else 1
                blocks.append(ResBlock(c_in, c.block_width, out, c.expansion, c.kernel_size, stride))
                c_in = out
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(
            nn.BatchNorm1d(2 * out),
            nn.Dropout(c.head_dropout / 2),
            nn.Linear(2 * out, c.head_hidden),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(c.head_hidden),
            nn.Dropout(c.head_dropout),
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm1d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def feature_dim(self) -> int:
        return self.config.head_hidden

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        x = self.stem(signals * lead_mask[:, :, None].to(signals.dtype))
        hidden = [x]
        for stage in self.stages:
            x = stage(x)
            hidden.append(x)
        pooled = self.head(torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1))
        return Encoded(pooled, [h.transpose(1, 2) for h in hidden] if return_hidden else None)

    def layer_id(self, name: str) -> int:
        """0 for the stem, one id per residual block in order, the head last."""
        if name.startswith("stem."):
            return 0
        if name.startswith("stages."):
            stage, block = (int(part) for part in name.split(".")[1:3])
            return 1 + sum(self.config.layers[:stage]) + block
        return 1 + sum(self.config.layers)
