"""Results as one table for pandas: ``python -m benchmark export --results DIR --format csv|parquet``.

One row per cell (``--per-label``: per cell and label) with

* the cell: ``dataset, label_set, preset, method, protocol, point, seed`` (``point``: the sweep
  point, e.g. ``n10pct-s0`` or ``leads-I+II``, empty for the plain protocol; a method variant such
  as ``lamae[la_mask_ratio=0]`` is in ``method``), its ``status`` (``ok`` or ``diverged``),
  ``path`` (the result file) and ``predictions`` (its test predictions);
* what groups cells into a leaderboard table: ``table`` (its title, readable: dataset · label set
  · preset · protocol [· point]), ``budget`` (the pretraining budget; empty for untrained methods
  and external encoders, which join every budget's table) and ``evaluation`` (the signature of the
  evaluation settings, which tells apart tables of one title whose settings differ, e.g. after a
  ``--set``) — see :func:`benchmark.report.comparison.comparable_tables`;
* every metric (``macro_auroc``, ``macro_auprc``, ``n_test``, ...), ``failure.*`` of a diverged cell;
* ``compute.*`` (parameters, FLOPs per step, steps, total FLOPs, budget, wall times, memory);
* ``details.*`` (what the protocol chose: l2, best epoch, ...), ``config.*`` (every setting,
  nested names joined with dots, e.g. ``config.pretrain.optim.base_lr``) and ``provenance.*``.

Curves (``compute.pretrain.loss_curve``, ``details.val_history``, ...) stay in the JSON results
and the leaderboard's figures; list-valued settings (e.g. ``config.protocol_config.l2_grid``)
are JSON text. With ``--per-label`` the per-label AUROC and AUPRC become rows (``label``,
``auroc``, ``auprc``), since label sets differ between datasets; otherwise they are left out.

An existing ``--to`` file is replaced only when it is such a table (its columns begin with the
cell's, :func:`is_export`): a user's own file of that name is refused, never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from benchmark.config import ConfigError
from benchmark.report.comparison import budget_label, evaluation_signature
from benchmark.run.results import ResultStore, is_diverged
from benchmark.storage import atomic_write

FORMATS = ("csv", "parquet")
#: the cell's fields as columns; the cell's ``variant`` (a sweep point) is the column ``point``
CELL_COLUMNS = ("dataset", "label_set", "preset", "method", "protocol", "point", "seed")
CELL_FIELDS = {"point": "variant"}
#: per-step or per-epoch series: in the JSON results and the leaderboard's figures, not in a table
CURVES = ("loss_curve", "val_history", "train_loss_history")
PER_LABEL = ("per_label_auroc", "per_label_auprc")


def flatten(value: dict, prefix: str = "") -> dict:
    """Nested dicts to one level with dotted names; lists become JSON text."""
    out = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict) and item:
            out.update(flatten(item, f"{name}."))
        else:
            out[name] = json.dumps(item) if isinstance(item, (list, dict)) else item
    return out


def _row(record: dict, root: Path) -> dict:
    metrics = {k: v for k, v in (record.get("metrics") or {}).items() if k not in PER_LABEL}
    pretrain = {k: v for k, v in (record["compute"].get("pretrain") or {}).items() if k not in CURVES}
    cell = {column: record["cell"].get(CELL_FIELDS.get(column, column), "") for column in CELL_COLUMNS}
    title = [cell["dataset"], cell["label_set"], cell["preset"], cell["protocol"], cell["point"]]
    row = {
        **cell,
        "status": "diverged" if is_diverged(record) else "ok",
        "table": " · ".join(part for part in title if part),
        "evaluation": evaluation_signature(record),
        "budget": budget_label(record),
        "path": Path(record["_path"]).relative_to(root).as_posix(),
        "predictions": record.get("predictions"),
        "signature": record["signature"],
        **metrics,
    }
    nested = {
        **({"failure": record["failure"]} if is_diverged(record) else {}),
        "compute": {**record["compute"], "pretrain": pretrain or None},
        "details": {k: v for k, v in (record.get("details") or {}).items() if k not in CURVES},
        "config": record["config"],
        "provenance": record["provenance"],
    }
    return flatten(row) | flatten(nested)


def results_frame(results_dir: Path, per_label: bool = False) -> pd.DataFrame:
    """Every result under ``results_dir`` as a data frame (see the module docstring)."""
    store = ResultStore(results_dir)
    rows = []
    for record in store.records():
        row = _row(record, store.root)
        if not per_label:
            rows.append(row)
            continue
        metrics = record.get("metrics") or {}
        for label in record.get("label_names") or list(metrics.get("per_label_auroc", {})):
            rows.append(
                {
                    **row,
                    "label": label,
                    "auroc": metrics.get("per_label_auroc", {}).get(label),
                    "auprc": metrics.get("per_label_auprc", {}).get(label),
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    # a setting that is a group in some cells and None in others (``config.pretrain`` of an
    # untrained method, ``config.variant`` of a plain protocol) is kept as its fields only
    groups = [c for c in frame.columns if frame[c].isna().all() and any(o.startswith(f"{c}.") for o in frame.columns)]
    frame = frame.drop(columns=groups)
    first = [*CELL_COLUMNS, "label"] if per_label else list(CELL_COLUMNS)
    return frame[[*first, *(c for c in frame.columns if c not in first)]]


def is_export(path: Path) -> bool:
    """Whether ``path`` is a table this module wrote (CSV or Parquet whose columns begin with
    :data:`CELL_COLUMNS`); False for anything else, absent files included."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PAR1"):
        try:
            import pyarrow.parquet as pq
        except ImportError:  # cannot tell: treated as the user's
            return False
        try:
            names = pq.read_schema(path).names
        except (OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
            return False
    else:
        names = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip().split(",")
    return tuple(names[: len(CELL_COLUMNS)]) == CELL_COLUMNS


def write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write atomically as CSV or Parquet (Parquet needs pyarrow, an optional dependency)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        atomic_write(path, frame.to_csv(index=False))
        return
    try:
        import pyarrow  # noqa: F401  (pandas' Parquet engine)
    except ImportError:
        raise ConfigError(
            "--format parquet needs pyarrow: pip install 'ecgbench[export]' (or pip install pyarrow), "
            "or use --format csv"
        ) from None
    atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
