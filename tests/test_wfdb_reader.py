"""The WFDB reader: our header parser and NumPy signal path against ``wfdb`` itself, on every real
record in ../shared/data (PTB-XL at both rates, LUDB, the CinC 2020/21 sample) and on records
written with ``wfdb.wrsamp`` in the formats the real data lacks (212, several files, 32)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import wfdb
from conftest import SHARED_DATA

from benchmark.data.readers import RecordError, WfdbReader, numpy_readable, unpack_212
from benchmark.data.wfdb_header import HeaderError, parse_header, read_header

SOURCES = ("ptbxl/records100", "ptbxl/records500", "ludb/data", "cinc2021")
SIGNAL_FIELDS = ("file_name", "fmt", "byte_offset", "adc_gain", "baseline", "units", "adc_zero", "checksum")


def real_records() -> list[str]:
    """Every record (path without .hea, relative to ../shared/data) of the real sources."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it sits beside the repository in CI)")
    records = sorted(
        path.relative_to(SHARED_DATA).with_suffix("").as_posix()
        for source in SOURCES
        for path in (SHARED_DATA / source).rglob("*.hea")
    )
    assert len(records) == 1000 + 200 + 339, "the real data folder changed; update this test"
    return records


def sanitised_copy(base: Path, target: Path) -> Path:
    """The record with the record line's name as wfdb wants it (Georgia writes ``E07500.mat``);
    the signal file is linked, so wfdb reads the very same bytes."""
    target.mkdir(parents=True, exist_ok=True)
    lines = Path(f"{base}.hea").read_text().splitlines()
    lines[0] = f"{base.name} {lines[0].split(maxsplit=1)[1]}"
    (target / f"{base.name}.hea").write_text("\n".join(lines) + "\n")
    for signal_file in read_header(f"{base}.hea").files():
        os.symlink(base.parent / signal_file, target / signal_file)
    return target / base.name


@pytest.mark.slow  # one wfdb.rdrecord per real record: ~10 s on a quiet core, wfdb's header parser is slow
def test_every_real_record_reads_as_wfdb_reads_it_bit_for_bit(tmp_path):
    """Header fields as ``wfdb.rdrecord`` parses them and signals equal to its ``p_signal`` bit
    for bit; the headers wfdb rejects (Georgia's record line) are compared on a sanitised copy."""
    records = real_records()
    reader = WfdbReader(str(SHARED_DATA), records)
    rejected = []
    for i, name in enumerate(records):
        base = SHARED_DATA / name
        ours = read_header(f"{base}.hea")
        assert numpy_readable(ours), f"{name} would not take the NumPy path"
        try:
            theirs = wfdb.rdrecord(str(base))
        except ValueError:  # wfdb's HeaderSyntaxError
            rejected.append(name)
            theirs = wfdb.rdrecord(str(sanitised_copy(base, tmp_path / name)))
        assert (ours.n_sig, ours.sig_len, ours.fs, list(ours.comments)) == (
            theirs.n_sig,
            theirs.sig_len,
            theirs.fs,
            theirs.comments,
        ), name
        for field in SIGNAL_FIELDS:
            expected = [0 if v is None and field == "byte_offset" else v for v in getattr(theirs, field)]
            assert [getattr(s, field) for s in ours.signals] == expected, (name, field)
        raw = reader.read(i)
        assert np.array_equal(raw.signal, theirs.p_signal.T, equal_nan=True), name
        assert (raw.channels, raw.fs) == (theirs.sig_name, theirs.fs), name
        assert raw.notes == [], name  # every real checksum agrees with its samples
    # the Georgia records that keep their original record line (README of ../shared/data)
    assert len(rejected) == 24 and all(name.startswith("cinc2021/E") for name in rejected)
    georgia = read_header(str(SHARED_DATA / rejected[0]) + ".hea")
    assert georgia.record_name.endswith(".mat") and georgia.n_sig == 12 and georgia.fs == 500
    assert any(c.startswith("Dx:") for c in georgia.comments)


def test_a_georgia_header_that_wfdb_rejects_is_read(shared_data):
    reader = WfdbReader(str(shared_data / "cinc2021"), ["E07500"])
    with pytest.raises(ValueError, match="record line"):
        wfdb.rdheader(str(shared_data / "cinc2021" / "E07500"))
    raw = reader.read(0)
    assert raw.signal.shape == (12, 5000) and raw.fs == 500 and raw.channels[:2] == ["I", "II"]


def test_lower_case_lead_names_and_mv_units_are_read(shared_data):
    ludb = WfdbReader(str(shared_data / "ludb" / "data"), ["1"]).read(0)
    assert ludb.channels[:3] == ["i", "ii", "iii"]
    ptb = read_header(str(shared_data / "cinc2021" / "S0001.hea"))  # PTB diagnostic writes mv
    assert {s.units for s in ptb.signals} == {"mv"}
    raw = WfdbReader(str(shared_data / "cinc2021"), ["S0001"]).read(0)
    assert raw.signal.shape == (12, 38400) and raw.fs == 1000


def write(directory: Path, name: str, digital: np.ndarray, fmt: str, **kwargs) -> Path:
    n = digital.shape[1]
    wfdb.wrsamp(
        name,
        fs=250,
        units=kwargs.pop("units", ["mV"] * n),
        sig_name=[f"c{k}" for k in range(n)],
        d_signal=digital,
        fmt=[fmt] * n,
        adc_gain=kwargs.pop("adc_gain", [200.0] * n),
        baseline=kwargs.pop("baseline", [0] * n),
        write_dir=str(directory),
        **kwargs,
    )
    return directory / name


@pytest.mark.parametrize("n_sig, length", [(3, 7), (2, 1000), (1, 5)])
def test_format_212_including_odd_sample_counts_and_invalid_samples(tmp_path, n_sig, length):
    rng = np.random.default_rng(n_sig)
    digital = rng.integers(-2047, 2048, size=(length, n_sig))
    digital[length // 2, 0] = -2048  # WFDB's invalid sample in format 212: NaN
    base = write(tmp_path, "r212", digital, "212", baseline=[7, -3, 0][:n_sig], adc_gain=[200.0, 1000.0, 31.5][:n_sig])
    assert numpy_readable(read_header(f"{base}.hea"))
    raw = WfdbReader(str(tmp_path), ["r212"]).read(0)
    assert np.array_equal(raw.signal, wfdb.rdsamp(str(base))[0].T, equal_nan=True)
    assert np.isnan(raw.signal[0, length // 2])


def test_unpack_212_inverts_the_bit_layout():
    # samples 0x123 and -1 (0xFFF): byte0 = 0x23, byte1 = high nibble of s1 | high nibble of s0, byte2 = 0xFF
    assert unpack_212(np.array([0x23, 0xF1, 0xFF], dtype=np.uint8), 2).tolist() == [0x123, -1]


def test_signals_in_two_files_and_other_formats_match_rdsamp(tmp_path):
    digital = np.random.default_rng(0).integers(-2000, 2000, size=(500, 4))
    record = wfdb.Record(
        record_name="split",
        n_sig=4,
        fs=500,
        sig_len=500,
        file_name=["split_a.dat", "split_a.dat", "split_b.dat", "split_b.dat"],
        fmt=["16", "16", "212", "212"],
        adc_gain=[100.0, 200.0, 300.0, 400.0],
        baseline=[0, 1, 2, 3],
        units=["mV"] * 4,
        sig_name=["I", "II", "V1", "V2"],
        d_signal=digital,
    )
    record.set_d_features()  # checksums and initial values
    record.set_defaults()
    record.wrsamp(write_dir=str(tmp_path))
    assert numpy_readable(read_header(str(tmp_path / "split.hea")))
    raw = WfdbReader(str(tmp_path), ["split"]).read(0)
    assert np.array_equal(raw.signal, wfdb.rdsamp(str(tmp_path / "split"))[0].T, equal_nan=True)

    base = write(tmp_path, "r32", digital, "32")  # not a NumPy format: read by wfdb
    assert not numpy_readable(read_header(f"{base}.hea"))
    raw = WfdbReader(str(tmp_path), ["r32"]).read(0)
    assert np.array_equal(raw.signal, wfdb.rdsamp(str(base))[0].T, equal_nan=True)


def test_engine_wfdb_reads_what_the_numpy_path_reads(shared_data):
    names = ["records500/00000/00001_hr", "records100/00000/00002_lr"]
    fast = WfdbReader(str(shared_data / "ptbxl"), names)
    reference = WfdbReader(str(shared_data / "ptbxl"), names, engine="wfdb")
    assert fast.identity() != reference.identity()
    for i in range(len(names)):
        assert np.array_equal(fast.read(i).signal, reference.read(i).signal, equal_nan=True)


def test_microvolt_channels_are_scaled_and_non_voltage_channels_left_out(tmp_path):
    digital = np.random.default_rng(1).integers(-2000, 2000, size=(300, 3))
    base = write(tmp_path, "units", digital, "16", units=["uV", "mV", "Ohm"])
    raw = WfdbReader(str(tmp_path), ["units"]).read(0)
    reference = wfdb.rdsamp(str(base))[0].T
    assert raw.channels == ["c0", "c1"]
    np.testing.assert_array_equal(raw.signal, [reference[0] * 1e-3, reference[1]])
    assert raw.notes == [("channel ignored", "'c2' (channel 2) is in 'Ohm', not a voltage", 0)]


def copy_record(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for signal_file in [*read_header(f"{source}.hea").files(), f"{source.name}.hea"]:
        shutil.copy(source.parent / signal_file, target / signal_file)
        (target / signal_file).chmod(0o644)
    return target / source.name


def test_a_changed_sample_is_noted_as_a_checksum_mismatch(shared_data, tmp_path):
    base = copy_record(shared_data / "ludb" / "data" / "7", tmp_path)
    data = bytearray(Path(f"{base}.dat").read_bytes())
    data[1000] ^= 0x01  # one bit of one sample
    Path(f"{base}.dat").write_bytes(bytes(data))
    raw = WfdbReader(str(tmp_path), ["7"]).read(0)
    assert [note[0] for note in raw.notes] == ["checksum mismatch"]
    assert "changed after its header was written" in raw.notes[0][1]


def test_a_mat_file_whose_matlab_header_disagrees_is_excluded(shared_data, tmp_path):
    base = copy_record(shared_data / "cinc2021" / "A0002", tmp_path)
    reader = WfdbReader(str(tmp_path), ["A0002"])
    assert reader.read(0).signal.shape == (12, 5000)
    mat = bytearray(Path(f"{base}.mat").read_bytes())
    mat[4:8], mat[8:12] = mat[8:12], mat[4:8]  # rows and columns swapped: a transposed matrix
    Path(f"{base}.mat").write_bytes(bytes(mat))
    with pytest.raises(RecordError, match=r"A0002\.mat is not the little-endian int16 MATLAB v4 matrix of 12 signals"):
        reader.read(0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no record line"),
        ("rec 2 500 5000\nrec.dat 16 200/mV 16 0 0 0 0 I\n", "declares 2 signals but 1 signal line"),
        ("rec twelve 500\n", "number of signals 'twelve' is not an integer"),
        ("rec 1 fast 10\nrec.dat 16\n", "sampling frequency 'fast'"),
        ("rec 1 500 10\nrec.dat 16 200/mV 16 0 0 0 0 I\n".replace("16 200", "16q 200"), "format '16q'"),
        ("rec 1 500 10\nrec.dat 16 2oo/mV\n", "ADC gain '2oo/mV'"),
    ],
)
def test_unparsable_headers_name_the_file_line_and_problem(text, message):
    with pytest.raises(HeaderError, match=message) as caught:
        parse_header(text, "x/rec.hea")
    assert str(caught.value).startswith("x/rec.hea")


def test_header_defaults_follow_the_wfdb_manual():
    header = parse_header("# made by hand\r\nrec 2\r\nrec.dat 16\r\nrec.dat 16 0(5) 12 7 0 0 0 lead two words\r\n")
    first, second = header.signals
    assert (header.fs, header.sig_len, header.comments) == (250.0, None, ("made by hand",))
    assert (first.adc_gain, first.baseline, first.units, first.description) == (200.0, 0, "mV", "")
    assert (second.adc_gain, second.baseline, second.adc_zero, second.description) == (200.0, 5, 7, "lead two words")
    assert parse_header("rec 1 500\nrec.dat 16 100/uV 12 9\n").signals[0].baseline == 9  # ADC zero when absent
    assert parse_header("rec/3 12 500 5000\n").n_seg == 3  # multi-segment: left to wfdb
