"""Building blocks of dataset plugins read from files (public re-export of :mod:`benchmark.data`):
record readers, the file-dataset base classes, label-table helpers, the ICD-10 hierarchy, the
PhysioNet/CinC Challenge's label tables and the common labels shared across sources."""

from benchmark.data.challenge import TABLE_FILES, ChallengeTables, header_records, read_dx
from benchmark.data.common_labels import COMMON_LABELS, CommonLabel, common_tokens, order_common
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

__all__ = [
    "TABLE_FILES",
    "ChallengeTables",
    "header_records",
    "read_dx",
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
    "UserDataConfig",
    "UserDataset",
    "annotate_user_table",
    "random_patient_splits",
]
