"""Building blocks of dataset plugins read from files (public re-export of :mod:`benchmark.data`):
record readers, the WFDB header parser, the file-dataset base classes, label-table helpers, the
ICD-10 hierarchy, :func:`signature` (the stable short hash that keys caches and fingerprints), the
PhysioNet/CinC Challenge's label tables, the common labels shared across sources, and the suite's
one ECG delineation (:func:`delineate`: R peaks and waves of a lead, as data preparation and the
ECG statistics measure them)."""

from benchmark.config import signature, to_jsonable
from benchmark.data.challenge import (
    TABLE_FILES,
    ChallengeTables,
    challenge_source,
    header_records,
    read_dx,
    read_dx_lines,
)
from benchmark.data.common_labels import COMMON_LABELS, CommonLabel, common_tokens, order_common
from benchmark.data.contract import data_identity
from benchmark.data.delineation import WAVES, Beats, delineate, neurokit
from benchmark.data.files import (
    LABELLED_SPLITS,
    Annotations,
    FileDatasetConfig,
    PreparedDataset,
    parse_list_cell,
    read_csv,
)
from benchmark.data.icd import (
    icd_description,
    icd_hierarchy,
    icd_label_names,
    icd_tree,
    is_valid_code,
)
from benchmark.data.pool import ConcatenatedRows, parse_pool
from benchmark.data.readers import NumpyReader, SignalSource, WfdbReader
from benchmark.data.user import (
    RandomSplitConfig,
    UserDataConfig,
    UserDataset,
    annotate_user_table,
    random_patient_splits,
)
from benchmark.data.wfdb_header import Header, HeaderError, read_header

__all__ = [
    "to_jsonable",
    "data_identity",
    "WAVES",
    "Beats",
    "delineate",
    "neurokit",
    "TABLE_FILES",
    "ChallengeTables",
    "challenge_source",
    "header_records",
    "read_dx",
    "read_dx_lines",
    "COMMON_LABELS",
    "CommonLabel",
    "common_tokens",
    "order_common",
    "RandomSplitConfig",
    "LABELLED_SPLITS",
    "Annotations",
    "FileDatasetConfig",
    "PreparedDataset",
    "parse_list_cell",
    "read_csv",
    "icd_description",
    "icd_hierarchy",
    "icd_label_names",
    "icd_tree",
    "is_valid_code",
    "ConcatenatedRows",
    "parse_pool",
    "NumpyReader",
    "SignalSource",
    "WfdbReader",
    "Header",
    "HeaderError",
    "read_header",
    "UserDataConfig",
    "UserDataset",
    "annotate_user_table",
    "random_patient_splits",
    "signature",
]
