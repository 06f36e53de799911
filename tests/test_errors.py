"""User and environment errors are one line naming the file and the fix (exit 2), never a
traceback, and they state the true cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.data.contract import DataError
from benchmark.registry import DATASETS


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines and lines[-1].startswith("error:"), lines
    return lines[-1]


def test_an_unwritable_output_folder_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    message = one_line_error(
        capsys, ["run", "--methods", "lamae", "--preset", "smoke", "--results", str(blocker / "res")]
    )
    assert str(blocker / "res") in message and "choose another path" in message


def test_a_budget_naming_a_method_that_does_not_pretrain_is_one_line(tmp_path, capsys):
    message = one_line_error(
        capsys,
        [
            "run",
            "--methods",
            "lamae",
            "--preset",
            "smoke",
            "--budget",
            "random_init",
            "--no-progress",
            "--results",
            str(tmp_path / "r"),
            "--leaderboard",
            str(tmp_path / "b.md"),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert "random_init does not pretrain" in message


def test_a_pretraining_split_smaller_than_a_batch_says_how_to_fix_it(tmp_path, capsys):
    message = one_line_error(
        capsys,
        [
            "run",
            "--methods",
            "lamae",
            "--preset",
            "smoke",
            "--set",
            "pretrain.batch_size=4096",
            "--no-progress",
            "--results",
            str(tmp_path / "r"),
            "--leaderboard",
            str(tmp_path / "b.md"),
            "--cache-dir",
            str(tmp_path / "c"),
        ],
    )
    assert "smaller than one batch of 4096" in message and "pretrain.batch_size" in message


def numpy_folder(root, signals, labels=None):
    root.mkdir()
    np.save(root / "signals.npy", signals)
    n = len(signals)
    labels = labels if labels is not None else {"AF": np.arange(n) % 2}
    pd.DataFrame({"patient_id": np.arange(n), **labels}).to_csv(root / "labels.csv", index=False)
    return root


def numpy_dataset(root, **config):
    cls = DATASETS.get("numpy")
    return cls(cls.Config(root=root, fs=100.0, **config))


@pytest.fixture
def ecg_mv():
    """Sine 'beats' of about 1 mV on 12 leads, each lead its own amplitude (identical leads would
    be masked as copies by preparation's plausibility checks): plausible millivolts."""
    t = np.arange(500) / 100
    amplitude = np.linspace(0.8, 1.4, 12)[:, None]
    return np.broadcast_to(amplitude * np.sin(2 * np.pi * 1.2 * t), (40, 12, 500)).astype(np.float32).copy()


def test_microvolts_given_as_millivolts_are_refused_with_the_scale_fix(tmp_path, ecg_mv):
    dataset = numpy_dataset(numpy_folder(tmp_path / "uv", ecg_mv * 1000))
    with pytest.raises(DataError, match=r"not plausible for mV.*numpy.scale_to_mv=0.001"):
        dataset.signal_source(100)
    assert numpy_dataset(tmp_path / "uv", scale_to_mv=0.001).signal_source(100) is not None


def test_integer_adc_counts_need_a_scale(tmp_path, ecg_mv):
    dataset = numpy_dataset(numpy_folder(tmp_path / "adc", (ecg_mv * 1000).astype(np.int16)))
    with pytest.raises(DataError, match=r"holds integers \(int16\).*numpy.scale_to_mv"):
        dataset.signal_source(100)


def test_a_yes_no_label_column_names_the_column_not_min_count(tmp_path, ecg_mv):
    labels = {"AF": np.where(np.arange(40) % 2, "yes", "no")}
    dataset = numpy_dataset(numpy_folder(tmp_path / "yesno", ecg_mv, labels))
    with pytest.raises(DataError, match=r"label column\(s\) 'AF' hold no 0/1 value \(e.g. 'no', 'yes'\)") as error:
        dataset.load(100, "default", tmp_path / "cache", progress=False)
    assert "min_count" not in str(error.value)
