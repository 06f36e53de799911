"""ecgbench's stable public API: what method and dataset plugins, and users, import.

Plugins import from here, never from ``benchmark.*``: the harness's internal modules may move
between releases (they were regrouped once), these names do not.

* contracts: :class:`Method` (+ :class:`MethodConfig`, :class:`Encoded`), :class:`DatasetPlugin`
  (+ :class:`DatasetConfig`, :class:`ECGArrays`), :class:`InputSpec`, :class:`Batch`, the lead
  order :data:`LEADS`;
* registries: :data:`METHODS`, :data:`DATASETS`, :data:`PROTOCOLS`
  (``@METHODS.register("name")``);
* shared building blocks: :mod:`ecgbench.layers` (transformer blocks, patching and masking,
  MAE decoder and loss, alignment losses, frozen-readout fitting), :mod:`ecgbench.rng` (masking
  noise keyed by sample) and :mod:`ecgbench.data` (readers and bases of file datasets);
* pretrained encoders in your own code: :func:`load_encoder` reads a folder written by
  ``python -m benchmark export-encoder`` and returns a :class:`PretrainedEncoder`
  (``forward(signals, lead_mask, fs=...) -> (B, feature_dim)``); :func:`read_record` (a WFDB
  record) and :func:`prepare_input` (an array) make its input as the benchmark did
  (:class:`PreparedInput`);
* encoders trained elsewhere, evaluated by the suite (``--methods external:my_encoder.py``):
  :class:`EncoderSpec` declares what they take and return.
"""

from benchmark.data.contract import (
    LEADS,
    LIMB_LEADS,
    SPLITS,
    DataError,
    DatasetConfig,
    DatasetPlugin,
    ECGArrays,
    InputSpec,
)
from benchmark.data.loader import Batch
from benchmark.method.base import Encoded, Method, MethodConfig
from benchmark.method.encoder_input import PreparedInput, prepare_input, read_record
from benchmark.method.exported import PretrainedEncoder, load_encoder
from benchmark.method.external_source import EncoderSpec
from benchmark.registry import DATASETS, METHODS, PROTOCOLS
from ecgbench import data, layers, rng

__all__ = [
    "LEADS",
    "LIMB_LEADS",
    "SPLITS",
    "DataError",
    "DatasetConfig",
    "DatasetPlugin",
    "ECGArrays",
    "InputSpec",
    "Batch",
    "Encoded",
    "Method",
    "MethodConfig",
    "PretrainedEncoder",
    "load_encoder",
    "PreparedInput",
    "prepare_input",
    "read_record",
    "EncoderSpec",
    "DATASETS",
    "METHODS",
    "PROTOCOLS",
    "data",
    "layers",
    "rng",
]
