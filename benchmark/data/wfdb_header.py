"""WFDB header (``.hea``) parsing: the record line, the signal lines and the comments.

Our own parser rather than ``wfdb.rdheader`` for two reasons. Speed: wfdb fills every field
through pandas lookups, about 70 ms of a record's 80 ms of preparation (profiled on PTB-XL);
this parser takes tens of microseconds. Robustness: real headers break wfdb's regular
expressions where nothing about the signal is ambiguous, e.g. the Georgia (G12EC) records of
the PhysioNet/CinC Challenge 2020 keep the original record line ``E07500.mat 12 500 5000
05-May-2020 09:49:17`` (a file extension in the record name), which ``wfdb.rdheader`` rejects.

The layout follows WFDB's ``header(5)`` manual page (physionet.org/physiotools/wag/header-5.htm):

- record line: ``name[/segments] n_sig [fs[/counter_fs[(base_counter)]] [sig_len [time [date]]]]``;
  the record name may carry an extension (Georgia), time and date are kept as text (they do not
  change the signal, and real headers write dates in several forms);
- one signal line per signal: ``file format[xsamples_per_frame][:skew][+byte_offset]
  [gain[(baseline)][/units] [adc_resolution [adc_zero [initial_value [checksum [block_size
  [description]]]]]]]``; the description (lead name) is the rest of the line;
- defaults as in the manual and in ``wfdb`` (whose signals we must reproduce exactly): gain 200
  when absent or 0, baseline = ADC zero when absent, units mV, sampling frequency 250 Hz;
- ``#`` lines are comments (kept: CinC's ``# Dx:`` labels live there); blank lines are skipped;
  unit spellings are kept as written (PTB's ``mv``; :func:`mv_per_unit` reads them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_FS = 250.0  # header(5): "if the sampling frequency is missing, 250 is assumed"
DEFAULT_GAIN = 200.0  # header(5): "if the ADC gain is missing or zero, 200 is assumed"

_FORMAT = re.compile(r"^(?P<fmt>\d+)(?:x(?P<spf>\d+))?(?::(?P<skew>\d+))?(?:\+(?P<offset>\d+))?$")
_GAIN = re.compile(
    r"^(?P<gain>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\((?P<baseline>[-+]?\d+)\))?(?:/(?P<units>\S*))?$"
)
_FS = re.compile(r"^(?P<fs>\d*\.?\d+(?:[eE][-+]?\d+)?)(?:/(?P<counter>[^(]*))?(?:\((?P<base>[^)]*)\))?$")

#: millivolts per unit for the voltage units found in ECG headers (case-insensitive)
MV_PER_UNIT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


class HeaderError(ValueError):
    """The header cannot be parsed; the message names the file, the line and the problem."""


@dataclass(frozen=True)
class SignalSpec:
    """One signal line (field names as in ``wfdb.Record``)."""

    file_name: str
    fmt: str
    samps_per_frame: int = 1
    skew: int = 0
    byte_offset: int = 0
    adc_gain: float = DEFAULT_GAIN
    baseline: int = 0
    units: str = "mV"
    adc_res: int = 0
    adc_zero: int = 0
    init_value: int | None = None
    checksum: int | None = None
    block_size: int = 0
    description: str = ""


@dataclass(frozen=True)
class Header:
    """A parsed header. ``n_seg`` is set for multi-segment records (whose segment lines are not
    parsed: :class:`~benchmark.data.readers.WfdbReader` reads those with ``wfdb``)."""

    record_name: str
    n_sig: int
    fs: float
    sig_len: int | None
    signals: tuple[SignalSpec, ...]
    comments: tuple[str, ...] = ()
    n_seg: int | None = None
    base_time: str = ""
    base_date: str = ""

    @property
    def channels(self) -> list[str]:
        return [s.description for s in self.signals]

    def files(self) -> list[str]:
        """The signal files the header names, in order of first use (``~``: no file)."""
        return list(dict.fromkeys(s.file_name for s in self.signals if s.file_name != "~"))


def mv_per_unit(units: str) -> float | None:
    """Millivolts per ``units`` (``mV``, ``mv``, ``uV``, ``V`` ...); None for a non-voltage unit."""
    return MV_PER_UNIT.get(units.strip().lower())


def read_header(path: str) -> Header:
    """Parse the header file at ``path`` (HeaderError if it cannot be parsed, OSError if unreadable)."""
    with open(path, "rb") as f:
        text = f.read().decode("latin-1")  # headers are ASCII; latin-1 never fails on a stray byte
    return parse_header(text, path)


def parse_header(text: str, source: str = "header") -> Header:
    """Parse header text; ``source`` names the file in error messages."""
    comments: list[str] = []
    lines: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comments.append(stripped[1:].strip())
        else:
            lines.append((number, stripped))
    if not lines:
        raise HeaderError(f"{source}: no record line (the file is empty or holds only comments)")
    number, record_line = lines[0]
    record = _record_line(record_line, f"{source} line {number}")
    if record["n_seg"] is not None:
        return Header(**record, signals=(), comments=tuple(comments))
    n_sig = record["n_sig"]
    if len(lines) - 1 < n_sig:
        raise HeaderError(
            f"{source}: the record line declares {n_sig} signals but {len(lines) - 1} signal line(s) follow "
            f"(the header is truncated)"
        )
    signals = tuple(_signal_line(line, f"{source} line {number}") for number, line in lines[1 : 1 + n_sig])
    return Header(**record, signals=signals, comments=tuple(comments))


def _record_line(line: str, where: str) -> dict:
    tokens = line.split()
    if len(tokens) < 2:
        raise HeaderError(f"{where}: record line {line!r} needs at least a record name and the number of signals")
    name, _, segments = tokens[0].partition("/")
    n_sig = _integer(tokens[1], "number of signals", where)
    if n_sig < 0:
        raise HeaderError(f"{where}: negative number of signals {n_sig}")
    fs = DEFAULT_FS
    if len(tokens) > 2:
        match = _FS.match(tokens[2])
        if match is None or float(match["fs"]) <= 0:
            raise HeaderError(f"{where}: sampling frequency {tokens[2]!r} is not a positive number")
        fs = float(match["fs"])
    sig_len = _integer(tokens[3], "number of samples per signal", where) if len(tokens) > 3 else None
    return {
        "record_name": name,
        "n_sig": n_sig,
        "fs": fs,
        "sig_len": sig_len,
        "n_seg": _integer(segments, "number of segments", where) if segments else None,
        "base_time": tokens[4] if len(tokens) > 4 else "",
        "base_date": " ".join(tokens[5:]),
    }


def _signal_line(line: str, where: str) -> SignalSpec:
    tokens = line.split(maxsplit=8)
    if len(tokens) < 2:
        raise HeaderError(f"{where}: signal line {line!r} needs at least a file name and a format")
    fmt = _FORMAT.match(tokens[1])
    if fmt is None:
        raise HeaderError(f"{where}: format {tokens[1]!r} is not FORMAT[xSAMPLES][:SKEW][+OFFSET] (e.g. 16 or 16+24)")
    fields: dict = {
        "file_name": tokens[0],
        "fmt": fmt["fmt"],
        "samps_per_frame": int(fmt["spf"]) if fmt["spf"] else 1,
        "skew": int(fmt["skew"] or 0),
        "byte_offset": int(fmt["offset"] or 0),
    }
    baseline: int | None = None
    if len(tokens) > 2:
        gain = _GAIN.match(tokens[2])
        if gain is None:
            raise HeaderError(f"{where}: ADC gain {tokens[2]!r} is not GAIN[(BASELINE)][/UNITS] (e.g. 1000(0)/mV)")
        fields["adc_gain"] = float(gain["gain"]) or DEFAULT_GAIN
        baseline = int(gain["baseline"]) if gain["baseline"] is not None else None
        if gain["units"]:
            fields["units"] = gain["units"]
    for position, key in ((3, "adc_res"), (4, "adc_zero"), (5, "init_value"), (6, "checksum"), (7, "block_size")):
        if len(tokens) > position:
            fields[key] = _integer(tokens[position], key.replace("_", " "), where)
    fields["baseline"] = baseline if baseline is not None else fields.get("adc_zero", 0)
    if len(tokens) > 8:
        fields["description"] = tokens[8].strip()
    return SignalSpec(**fields)


def _integer(token: str, what: str, where: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise HeaderError(f"{where}: {what} {token!r} is not an integer") from None
