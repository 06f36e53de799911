"""A loaded encoder cannot be misfed: ``ecgbench.read_record`` / ``ecgbench.prepare_input`` make its
input as the benchmark did (leads by name, units checked, its rate, the centred window), and the
encoder refuses what it cannot encode (no rate, another rate or window, no lead present, NaN) and
damaged files, each with one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import wfdb
from test_workflow import checkpoint_folder

import ecgbench
from benchmark.cli import main
from benchmark.data.contract import LEADS, DataError
from benchmark.run.export import export_encoder


@pytest.fixture
def encoder(tmp_path):
    """An exported LAMAE of the smoke preset: 2.5 s windows (250 samples) at 100 Hz."""
    folder, _ = checkpoint_folder(tmp_path)
    export_encoder(folder, tmp_path / "encoder")
    return ecgbench.load_encoder(tmp_path / "encoder")


def ptbxl_record(shared_data, rate: str = "lr") -> tuple[str, np.ndarray, list[str]]:
    folder = "records100" if rate == "lr" else "records500"
    path = str(shared_data / "ptbxl" / folder / "00000" / f"00001_{rate}")
    signals, fields = wfdb.rdsamp(path)
    return path, signals.T, list(fields["sig_name"])


def test_a_wfdb_record_becomes_the_centred_window_of_the_encoders_input(shared_data, encoder):
    path, signals, names = ptbxl_record(shared_data)
    prepared = ecgbench.read_record(path, encoder)
    assert prepared.signals.shape == (1, 12, 250) and prepared.fs == 100 and bool(prepared.lead_mask.all())
    centred = signals[[names.index(lead.upper()) for lead in LEADS], 375:625]  # 10 s at 100 Hz: samples 375-624
    assert np.array_equal(prepared.signals[0].numpy(), centred.astype(np.float16).astype(np.float32))
    assert torch.equal(encoder(prepared), encoder(prepared.signals, prepared.lead_mask, fs=100))
    assert ecgbench.read_record(path + ".hea", encoder).signals.equal(prepared.signals)

    hr_path, *_ = ptbxl_record(shared_data, "hr")  # 500 Hz: resampled to the encoder's 100 Hz
    assert ecgbench.read_record(hr_path, encoder).signals.shape == (1, 12, 250)


def test_an_array_is_matched_by_lead_name_in_any_case_and_order_with_its_units(shared_data, encoder):
    path, signals, names = ptbxl_record(shared_data)
    reference = ecgbench.read_record(path, encoder)
    order = np.random.default_rng(0).permutation(12)
    shuffled = ecgbench.prepare_input(signals[order], 100, [names[i].lower() for i in order], encoder)
    assert torch.equal(shuffled.signals, reference.signals) and torch.equal(shuffled.lead_mask, reference.lead_mask)
    in_uv = ecgbench.prepare_input(1000 * signals, 100, names, encoder, units="uV")
    assert torch.allclose(in_uv.signals, reference.signals, atol=1e-3)
    with pytest.raises(DataError, match=r"implausible amplitude.*\(signals in another unit\? give units=\)"):
        ecgbench.prepare_input(1000 * signals, 100, names, encoder)  # µV given as mV
    six = ecgbench.prepare_input(np.stack([signals, signals])[:, :6], 100, names[:6], encoder)
    assert six.signals.shape == (2, 12, 250) and six.lead_mask[:, :6].all() and not six.lead_mask[:, 6:].any()
    assert any("V1: no channel has this name" in note for note in six.notes[0])
    with pytest.raises(DataError, match="with 11 lead names: give"):
        ecgbench.prepare_input(signals, 100, names[:11], encoder)
    with pytest.raises(DataError, match=r"is 2 s long; the encoder takes 2.5 s windows"):
        ecgbench.prepare_input(signals[:, :200], 100, names, encoder)


def test_the_encoder_refuses_what_it_cannot_encode(encoder):
    signals = 0.5 * torch.randn(3, 12, 250)
    mask = torch.ones(3, 12, dtype=torch.bool)
    with pytest.raises(DataError, match=r"give the signals' sampling rate"):
        encoder(signals, mask)
    empty = mask.clone()
    empty[1] = False
    with pytest.raises(DataError, match=r"record\(s\) 1 of the batch have no lead present"):
        encoder(signals, empty, fs=100)
    broken = signals.clone()
    broken[2, 1, 7] = float("nan")
    with pytest.raises(DataError, match="NaN or inf in present leads \\(first: record 2, lead II"):
        encoder(broken, mask, fs=100)
    partial = mask.clone()
    partial[2, 1] = False  # the NaN sits in a masked lead: it never reaches the features
    clean = signals.clone()
    clean[2, 1] = 0
    assert torch.equal(encoder(broken, partial, fs=100), encoder(clean, partial, fs=100))
    prepared = ecgbench.PreparedInput(signals, mask, 100.0)
    with pytest.raises(DataError, match="carries its lead mask and rate"):
        encoder(prepared, fs=100)


def test_damaged_encoder_files_are_one_line_naming_the_file(tmp_path, capsys):
    folder, _ = checkpoint_folder(tmp_path)
    export_encoder(folder, tmp_path / "encoder")
    config, weights = tmp_path / "encoder" / "config.json", tmp_path / "encoder" / "model.safetensors"
    intact = config.read_bytes(), weights.read_bytes()
    config.write_bytes(intact[0][: len(intact[0]) // 2])
    with pytest.raises(
        DataError, match=r"config.json is damaged or truncated \(JSONDecodeError.*export the encoder again"
    ):
        ecgbench.load_encoder(tmp_path / "encoder")
    assert (
        main(
            [
                "run",
                "--methods",
                f"external:{tmp_path / 'encoder'}",
                "--preset",
                "smoke",
                "--results",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "config.json is damaged or truncated" in err[0]
    config.write_bytes(intact[0])
    weights.write_bytes(intact[1][:100])
    with pytest.raises(
        DataError, match=r"model.safetensors is damaged or truncated \(SafetensorError.*export the encoder again"
    ):
        ecgbench.load_encoder(tmp_path / "encoder")
    weights.write_bytes(intact[1])
    config.write_text('{"format": "ecgbench-encoder", "format_version": 1, "method": "lamae"}')
    with pytest.raises(DataError, match="lacks method_config, input; export the encoder again"):
        ecgbench.load_encoder(tmp_path / "encoder")
    with pytest.raises(DataError, match="does not exist; give the path of a WFDB record"):
        ecgbench.read_record(tmp_path / "nothing", ecgbench.load_encoder)
