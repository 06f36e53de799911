"""An encoder trained elsewhere, described for ecgbench (docs/methods-and-plugins.md, "Evaluate your own encoder").

`python -m benchmark run --methods external:examples/external_encoder/my_encoder.py ...` imports
this file: SPEC says what the encoder takes, build() makes the module, WEIGHTS names its
state_dict (relative to this file). The suite feeds the encoder exactly SPEC's input, made from
the prepared data: here 2 s windows at 50 Hz (resampled from the preset's 100 Hz), the limb leads
before the chest leads in this encoder's own order, in microvolts, each lead z-scored.
"""

import torch
from torch import nn

from ecgbench import EncoderSpec

NAME = "my_cnn"  # the leaderboard row: my_cnn-<8 hex digits of the content hash>
SPEC = EncoderSpec(
    fs=50,
    window_s=2.0,
    leads=("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"),  # case is ignored
    units="uV",
    normalise="lead",
)
WEIGHTS = "my_encoder_state.pt"


class SmallCNN(nn.Module):
    """(batch, 12, 100) -> (batch, 32): two convolutions and global average pooling."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv1d(12, width, 7, padding=3),
            nn.GELU(),
            nn.Conv1d(width, width, 5, padding=2, stride=2),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x).mean(dim=-1)


def build() -> nn.Module:
    return SmallCNN()
