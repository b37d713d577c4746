"""NIED K-NET / KiK-net ASCII (17-line header; integer counts × ``Scale Factor`` → gal).

Read with ObsPy's NIED reader (``format="KNET"``), which keeps counts in ``data`` and puts the
scale factor, converted to m/s² per count, in ``stats.calib``; samples are ``counts × calib``.
The DC offset of the raw counts is kept (the header's ``Max. Acc.`` is offset-free).
One file per component: ``.NS/.EW/.UD`` (K-NET), ``.NS1/.EW1/.UD1`` (KiK-net borehole) and
``.NS2/.EW2/.UD2`` (KiK-net surface); the three files of one stem and sensor make one record.
Mapping: UD→Z, NS→N, EW→E. Times in the header are JST; ObsPy converts to UTC (−9 h) and removes
the 15 s trigger delay from the record start. Network code ``BO`` (NIED, as ObsPy sets it).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from deepvs30.readers.base import (
    RawRecord,
    add_component,
    check_record,
    fail,
    library_input,
    read_bytes,
    require_zne,
    stack_zne,
)

FORMAT_KNET = "knet"
FORMAT_KIKNET = "kiknet"
_SUFFIX = re.compile(r"^\.(NS|EW|UD)([12]?)$", re.IGNORECASE)
_COMPONENT = {"UD": "Z", "NS": "N", "EW": "E"}
_RECORD_TIME = re.compile(r"^Record Time\s+(\S+ \S+)", re.MULTILINE)
HEADER_TIME_FORMAT = "%Y/%m/%d %H:%M:%S"  # times of the header (JST)


def looks_like(path: Path, head: bytes) -> bool:
    return head.startswith(b"Origin Time") and b"Scale Factor" in head


def format_of(path: Path) -> str:
    match = _SUFFIX.match(path.suffix)
    return FORMAT_KIKNET if match and match[2] else FORMAT_KNET


def group_key(path: Path) -> str:
    """Stem plus sensor digit: ``X.NS2``, ``X.EW2``, ``X.UD2`` → ``X.??2``."""
    match = _SUFFIX.match(path.suffix)
    digit = match[2] if match else ""
    return str(path.with_suffix(f".??{digit}"))


def shift_record_time(text: str, shift: timedelta) -> str:
    """The text of a K-NET/KiK-net file with its ``Record Time`` header moved by ``shift``
    (the rest unchanged; a text without that line is returned as is)."""
    match = _RECORD_TIME.search(text)
    if match is None:
        return text
    when = datetime.strptime(match[1], HEADER_TIME_FORMAT) + shift
    return text[: match.start(1)] + when.strftime(HEADER_TIME_FORMAT) + text[match.end(1) :]


def _read_trace(path: Path):  # -> obspy.Trace
    import obspy

    read_bytes(path)
    try:
        stream = obspy.read(library_input(path), format="KNET")
    except Exception as exc:  # ObsPy raises assorted types on malformed headers
        raise fail(
            path, f"not a readable K-NET/KiK-net file ({type(exc).__name__}: {exc})"
        ) from exc
    if len(stream) != 1:
        raise fail(path, f"{len(stream)} traces, expected 1")
    trace = stream[0]
    calib = float(trace.stats.calib)
    if not np.isfinite(calib) or calib <= 0:
        raise fail(path, f"invalid scale factor (calib {calib})")
    return trace


def read(paths: list[Path]) -> list[RawRecord]:
    traces = {}
    for path in paths:
        trace = _read_trace(path)
        comp = _COMPONENT.get(trace.stats.channel[:2].upper())
        if comp is None:
            raise fail(path, f"unknown direction {trace.stats.channel!r}")
        add_component(path, traces, comp, (path, trace))
    first = paths[0]
    require_zne(first, traces, "UD, NS, EW")
    rates = {c: float(t.stats.sampling_rate) for c, (_, t) in traces.items()}
    if len(set(rates.values())) != 1:
        raise fail(first, f"components have different sampling rates {rates}")
    starts = {str(t.stats.starttime) for _, t in traces.values()}
    if len(starts) != 1:
        raise fail(first, f"components start at different times {sorted(starts)}")
    z, n, e = (traces[c][1] for c in "ZNE")
    knet = z.stats.knet
    sensor = "borehole" if z.stats.channel.endswith("1") else "surface"
    record = RawRecord(
        waveform_mps2=stack_zne(
            first, *(t.data.astype(np.float64) * t.stats.calib for t in (z, n, e))
        ),
        sampling_rate_hz=rates["Z"],
        start_time=z.stats.starttime.isoformat(),
        station_network=z.stats.network or "BO",
        station_code=z.stats.station,
        station_latitude_deg=float(knet.stla),
        station_longitude_deg=float(knet.stlo),
        event_id=f"JMA:{knet.evot.strftime('%Y%m%dT%H%M%S')}",
        event_magnitude=float(knet.mag),
        event_magnitude_type="MJMA",
        event_latitude_deg=float(knet.evla),
        event_longitude_deg=float(knet.evlo),
        event_depth_km=float(knet.evdp),
        event_origin_time=knet.evot.isoformat(),
        sensor=sensor,
        source_files=tuple(str(traces[c][0]) for c in "ZNE"),
        source_format=format_of(first),
        extra={
            "pga_header_mps2": {
                c: float(t.stats.knet.accmax) * 0.01 for c, (_, t) in traces.items()
            }
        },
    )
    return [check_record(record)]
