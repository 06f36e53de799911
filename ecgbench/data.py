"""Building blocks of dataset plugins read from files (public re-export of :mod:`benchmark.data`):
record readers, the WFDB header parser, the file-dataset base classes, label-table helpers, the
ICD-10 hierarchy and :func:`signature` (the stable short hash that keys caches and fingerprints)."""

from benchmark.config import signature
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
from benchmark.data.readers import NumpyReader, SignalSource, WfdbReader
from benchmark.data.user import (
    UserDataConfig,
    UserDataset,
    annotate_user_table,
    random_patient_splits,
)
from benchmark.data.wfdb_header import Header, HeaderError, read_header

__all__ = [
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
