"""``python -m benchmark new-method NAME``: write a documented template method plugin.

The template is a minimal but real method — a per-lead masked autoencoder with one encoder
shared by the leads, built from the shared blocks of ``benchmark/nn/layers.py`` — that passes
``python -m benchmark validate`` as written, so a contributor starts from something that works
and changes the model and the loss.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

NAME_PATTERN = re.compile(r"[a-z][a-z0-9_]*")

TEMPLATE = Template('''"""$title: <one sentence: what the method learns and how>.

Source: <authors, "title", venue year (arXiv id)> [paper]; checked against <owner/repo, file>
[code] (or: no public code). Mark every fact [paper], [code] or [choice] (your decision where
the sources are silent) and expose each [choice] as a field of ``${class_name}Config``.

As written this is a per-lead masked autoencoder (He et al. 2022): each present lead is cut
into patches, a random 75 % of them is hidden, one encoder shared by all leads (plus a
learnable lead embedding) encodes the visible ones, and a decoder reconstructs the hidden
ones. Downstream, the representation is the mean over the present leads of their encoder CLS
tokens. Replace the model and the loss with yours; keep the contract:

* ``pretrain_loss(batch)`` returns {"loss": scalar, "trivial/NAME": scalar, ...logs}: each
  ``trivial/`` entry is the loss of a trivial predictor on the same targets (predicting zero, a
  lead's visible mean: ``ecgbench.layers.reconstruction_loss`` gives both), so that a run that
  learned nothing is recognised and not ranked; ``batch.signals`` is (B, 12, T)
  in mV in ``ecgbench.LEADS`` order, ``batch.lead_mask`` (B, 12) is False for missing leads
  (their signal is zero and must not influence anything); draw random masks from
  ``batch.keys`` with ``ecgbench.rng`` (``split``, ``fold_in``, ``uniform``), not ``torch.rand``.
* ``encode(signals, lead_mask, return_hidden)`` returns ``Encoded(pooled (B, feature_dim),
  hidden_states [per layer (B, tokens, width)] or None)``; it must work for any subset of
  leads, including a single one.
* ``layer_id(name)`` numbers parameters from 0 (embeddings) to the last block (layer-wise lr
  decay in fine-tuning); ``pretraining_only`` lists the prefixes used only by the loss (the
  decoder), which are not counted as encoder parameters and stay frozen in fine-tuning.
* Shared architecture fields (dim, depth, heads, patch_s, decoder_*) come from the preset, so
  every method is sized alike; add your own fields to the config dataclass with validation.

Check it with ``python -m benchmark validate $path``; run it with
``python -m benchmark run --methods $name --plugin $path`` (or drop the file in methods/).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import nn

from ecgbench import LEADS, METHODS, Batch, Encoded, InputSpec, Method, MethodConfig, rng
from ecgbench.layers import (MAEDecoder, PatchEncoder, masked_mean, patchify, random_keep_ids,
                             reconstruction_loss, scatter_visible, to_lead_slots)


@dataclass
class ${class_name}Config(MethodConfig):
    mask_ratio: float = 0.75  # [choice] fraction of each lead's patches hidden from the encoder
    norm_pix: bool = False  # [choice] normalise each target patch by its own mean and variance

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")


@METHODS.register("$name")
class ${class_name}(Method):
    summary = "$title: <one line for `python -m benchmark list`>"
    Config = ${class_name}Config
    pretraining_only = ("decoder.",)

    def __init__(self, config: ${class_name}Config, input_spec: InputSpec):
        super().__init__(config, input_spec)  # sets self.patch_len and self.n_patches
        c = config
        self.encoder = PatchEncoder(self.patch_len, self.n_patches, c.dim, c.depth, c.heads, c.mlp_ratio, c.drop_path)
        self.lead_embed = nn.Parameter(trunc_normal_(torch.zeros(len(LEADS), c.dim), std=0.02))
        self.decoder = MAEDecoder(c.dim, self.patch_len, self.n_patches, c.decoder_dim, c.decoder_depth,
                                  c.decoder_heads, c.mlp_ratio)

    def _lead_ids(self, lead_mask: torch.Tensor) -> torch.Tensor:
        """Lead index of every present (record, lead) pair, in ``tensor[lead_mask]`` order."""
        return torch.arange(len(LEADS), device=lead_mask.device).expand_as(lead_mask)[lead_mask]

    def pretrain_loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        present = batch.lead_mask
        patches = patchify(batch.signals, self.patch_len)[present]  # (P, N, p): present leads only
        n_keep = max(1, int(self.n_patches * (1 - self.config.mask_ratio)))
        # masking noise comes from each sample's key (one stream per lead), never from torch.rand,
        # so a sample is masked alike whatever the batch split, device or resume point
        keep_ids = random_keep_ids(rng.split(batch.keys, len(LEADS))[present], self.n_patches, n_keep)
        tokens, _ = self.encoder(patches, keep_ids, extra=self.lead_embed[self._lead_ids(present)])
        dense, is_visible = scatter_visible(tokens[:, 1:], keep_ids, self.n_patches)
        pred = self.decoder(dense, is_visible, prefix=tokens[:, :1])  # the CLS token guides the decoder
        return reconstruction_loss(pred, patches, ~is_visible, self.config.norm_pix)

    def encode(self, signals: torch.Tensor, lead_mask: torch.Tensor, return_hidden: bool = False) -> Encoded:
        patches = patchify(signals, self.patch_len)[lead_mask]
        tokens, hidden = self.encoder(patches, extra=self.lead_embed[self._lead_ids(lead_mask)],
                                      return_hidden=return_hidden)
        per_lead = to_lead_slots(tokens[:, 0], lead_mask)  # (B, L, D), zeros for missing leads
        pooled = masked_mean(per_lead, lead_mask, dim=1)  # mean of the present leads' CLS tokens
        if not return_hidden:
            return Encoded(pooled)
        # every layer's tokens, (P, 1 + N, D) -> (B, L * (1 + N), D), zeros for missing leads
        return Encoded(pooled, [to_lead_slots(h, lead_mask).flatten(1, 2) for h in hidden])

    def layer_id(self, name: str) -> int:
        if (i := self.block_index(name, "encoder.transformer")) is not None:
            return i + 1
        if name.startswith(("encoder.transformer.norm", "decoder.")):
            return self.config.depth + 1
        return 0  # patch embedding, CLS token, lead embedding
''')


def class_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def check_plugin_name(name: str, kind: str) -> None:
    """A registry name that is also a valid module name, or ValueError saying what is allowed."""
    if not NAME_PATTERN.fullmatch(name) or keyword.iskeyword(name):
        raise ValueError(
            f"{kind} name {name!r} must be lower-case letters, digits and '_', starting with a letter "
            f"(it is also the module name)"
        )


def render_template(name: str, path: Path) -> str:
    """The template plugin for method ``name`` that will live at ``path``."""
    check_plugin_name(name, "method")
    return TEMPLATE.substitute(
        name=name, class_name=class_name(name), title=name.replace("_", " ").upper(), path=path.as_posix()
    )


def default_template_path(name: str, folder: str = "methods") -> Path:
    """``FOLDER/NAME.py`` in a checkout (discovered automatically), else ``./NAME.py``."""
    return Path(folder) / f"{name}.py" if Path(folder).is_dir() else Path(f"{name}.py")
