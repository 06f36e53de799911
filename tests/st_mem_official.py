"""A fixed ST-MEM problem whose loss was computed with the official code (bakqui/ST-MEM).

The input, the weights (in the layout of an official checkpoint) and the patch masks are
rebuilt here from formulas, so the repository stores only numbers
(``data/st_mem_official_reference.json``: the official parameter names and shapes, the kept
patches, the official losses). ``tests/test_st_mem_reference.py`` converts the weights with
``from_official_state_dict`` and checks that ``st_mem`` reproduces the losses.

Regenerate the numbers (needs a checkout of the official code, which is never copied here)::

    git clone https://github.com/bakqui/ST-MEM /tmp/ST-MEM
    python tests/st_mem_official.py /tmp/ST-MEM $(git -C /tmp/ST-MEM rev-parse HEAD)
"""

from __future__ import annotations

import json
import sys
import zlib
from functools import partial
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from benchmark import rng
from benchmark.data.contract import LEADS
from benchmark.nn.layers import sincos_positions

REFERENCE = Path(__file__).resolve().parent / "data" / "st_mem_official_reference.json"
#: the official model's sizes; its attention heads are 64 wide (``dim_head``), so dim = 64 x heads
SIZES = {"dim": 128, "depth": 2, "heads": 2, "decoder_dim": 128, "decoder_depth": 1, "decoder_heads": 2}
FS, WINDOW_S, PATCH_S = 250, 2.4, 0.3  # 600 samples in 8 patches of 75 (the official patch size)
BATCH, KEY_OFFSET = 3, 1234


def pseudo_random(name: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> torch.Tensor:
    """Deterministic values of the given std for a tensor name (a hash of sines in float64, the
    same on every platform and torch version; no random generator involved)."""
    i = np.arange(int(np.prod(shape)), dtype=np.float64)
    u = np.modf(np.abs(np.sin(i * 12.9898 + (zlib.crc32(name.encode()) % 10007) * 78.233)) * 43758.5453)[0]
    return torch.from_numpy(mean + (u - 0.5) * np.sqrt(12.0) * std).float().reshape(shape)


def official_weights(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Weights for every tensor of an official ``ST_MEM`` state dict: Xavier-scaled linears,
    LayerNorm scales around 1, small biases and embeddings, and the fixed positions the official
    code initialises (sin-cos on the patches, zeros for the two SEP slots)."""
    weights = {}
    for key, shape in shapes.items():
        # the official model registers its patch embedding twice (``ST_MEM.to_patch_embedding`` is
        # the encoder's), one tensor under two names: both get the encoder name's values
        name = f"encoder.{key}" if key.startswith("to_patch_embedding.") else key
        if name.endswith(("pos_embedding", "pos_embed")):
            positions = torch.zeros(shape[1:])
            positions[1:-1] = sincos_positions(shape[1] - 2, shape[2])
            weights[key] = positions[None]
        elif len(shape) == 2:  # linear
            weights[key] = pseudo_random(name, tuple(shape), std=(2.0 / sum(shape)) ** 0.5)
        elif len(shape) == 1 and name.endswith("weight"):  # LayerNorm scale
            weights[key] = pseudo_random(name, tuple(shape), std=0.1, mean=1.0)
        else:  # biases, SEP, lead and mask embeddings
            weights[key] = pseudo_random(name, tuple(shape), std=0.1)
    return weights


def official_input() -> torch.Tensor:
    """(BATCH, 12, 600) ECG-like sums of sinusoids, different in every record and lead."""
    t = torch.arange(int(FS * WINDOW_S), dtype=torch.float64) / FS
    b = torch.arange(BATCH, dtype=torch.float64)[:, None, None]
    lead = torch.arange(len(LEADS), dtype=torch.float64)[None, :, None]
    signal = torch.sin(2 * torch.pi * (1.1 + 0.13 * lead + 0.07 * b) * t + lead)
    signal = signal + 0.4 * torch.sin(2 * torch.pi * (7.3 + 0.5 * b) * t + 0.3 * lead) * torch.cos(lead + b)
    return signal.float()


def batch_keys() -> torch.Tensor:
    return torch.arange(BATCH, dtype=torch.int64) + KEY_OFFSET


def masking_noise(n_patches: int) -> torch.Tensor:
    """(BATCH, 12, N) uniforms from the batch keys: what ``st_mem`` masks with (benchmark/rng.py)."""
    return rng.uniform(rng.split(batch_keys(), len(LEADS)), n_patches)


def compute_reference(checkout: Path, commit: str) -> dict:
    """Run the official model on the fixed problem, its random masking fed our masking noise."""
    sys.path.insert(0, str(checkout))
    from models.st_mem import ST_MEM  # the official code, run in place

    seq_len, patch = int(FS * WINDOW_S), int(FS * PATCH_S)
    noise = masking_noise(seq_len // patch)
    losses = {}
    for norm_pix in (True, False):
        model = ST_MEM(
            seq_len=seq_len,
            patch_size=patch,
            num_leads=len(LEADS),
            embed_dim=SIZES["dim"],
            depth=SIZES["depth"],
            num_heads=SIZES["heads"],
            decoder_embed_dim=SIZES["decoder_dim"],
            decoder_depth=SIZES["decoder_depth"],
            decoder_num_heads=SIZES["decoder_heads"],
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),  # as st_mem_vit_base_dec256d4b
            norm_pix_loss=norm_pix,
        ).eval()
        shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
        model.load_state_dict(official_weights(shapes))
        with torch.no_grad(), mock.patch.object(torch, "rand", lambda *size, device=None: noise.to(device)):
            output = model(official_input(), mask_ratio=0.75)
        losses["norm_pix" if norm_pix else "raw"] = float(output["loss"])
        kept = (output["mask"] == 0).nonzero()[:, 2].reshape(BATCH, len(LEADS), -1)
    return {
        "official_code": f"bakqui/ST-MEM {commit}",
        "torch": torch.__version__,
        "loss": losses,
        "keep_ids": kept.tolist(),
        "official_shapes": shapes,
    }


if __name__ == "__main__":
    REFERENCE.parent.mkdir(exist_ok=True)
    reference = compute_reference(Path(sys.argv[1]), sys.argv[2])
    REFERENCE.write_text(
        "{\n" + ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in reference.items()) + "\n}\n"
    )
    print(f"wrote {REFERENCE}")
