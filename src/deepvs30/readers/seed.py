"""Channel-per-trace formats read through ObsPy: miniSEED, SAC and anything ``obspy.read`` knows.

Traces are grouped by ``NET.STA.LOC`` and band/instrument code (``HN?``, ``EN?``…) into
3-component records. Units: these files hold no trustworthy unit, so a StationXML response is
required (``NET.STA.xml`` or any ``*.xml`` inventory in the same folder, or one passed in):
samples are divided by the overall sensitivity, whose input units must be acceleration (M/S**2).
Raw counts without a response, and SAC files without one, are refused ("unknown units").
Orientation: azimuth/dip from the inventory, rotated to ZNE with ObsPy's ``rotate2zne`` (so
``HN1``/``HN2`` end up as N/E correctly). Channels starting at different times are trimmed to their
common window.

NIED channel names (``EW1/NS1/UD1`` borehole, ``EW2/NS2/UD2`` surface) are also grouped, into
one record per sensor: UD→Z, NS→N, EW→E, no rotation. Such miniSEED files written by the
datools KiK-net helpers (one channel per file, FLOAT32/FLOAT64 samples, no StationXML,
``<STA>/…/{EW2,NS2,UD2}/<STA><yymmddhhmm>.<CH>.MSEED``) hold acceleration in **g** (datools
converts gal × 0.0010197 ≈ 1/980.665): without a StationXML response their float samples are
taken as g and converted with ×9.80665 m/s² per g (integer NIED-channel samples are counts:
refused as unknown units). Their header station code is cut to 5 characters (SEED limit:
``FKSH1``); where the file name ``<code><yymmddhhmm>`` gives a longer code that starts with it,
the file-name code is used (``FKSH11``). Files of one record sit in sibling channel folders;
:func:`group_key` and :func:`search_dirs` look across them.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from deepvs30.readers.base import (
    G_MPS2,
    RawRecord,
    check_record,
    fail,
    library_input,
    read_bytes,
    sibling,
    siblings,
)

FORMAT_MSEED = "mseed"
FORMAT_SAC = "sac"
FORMAT_OBSPY = "obspy"
# Input units of the response → factor from (samples / sensitivity) to m/s².
_ACC_UNITS = {
    "M/S**2": 1.0,
    "M/S^2": 1.0,
    "M/S/S": 1.0,
    "M/SEC**2": 1.0,
    "M/S2": 1.0,
    "CM/S**2": 0.01,
    "CM/S^2": 0.01,
    "CM/S/S": 0.01,
    "GAL": 0.01,
    "MM/S**2": 1e-3,
    "NM/S**2": 1e-9,
    "NM/S^2": 1e-9,
    "G": 9.80665,
}
_OBSPY_FORMAT = {FORMAT_MSEED: "MSEED", FORMAT_SAC: "SAC", FORMAT_OBSPY: None}
NIED_CHANNEL = re.compile(r"^(EW|NS|UD)([12])$", re.IGNORECASE)
_NIED_COMPONENT = {"UD": "Z", "NS": "N", "EW": "E"}
_NIED_STEM = re.compile(r"^([A-Z]{3,4}\d{2,3})(\d{10})$")  # station + JST yymmddhhmm
_FLOAT_ENCODINGS = ("FLOAT32", "FLOAT64")
DATOOLS_UNIT_MPS2 = G_MPS2  # datools miniSEED samples are in g


def looks_like_mseed(path: Path, head: bytes) -> bool:
    if path.suffix.lower() in (".mseed", ".miniseed", ".msd"):
        return True
    return len(head) >= 48 and head[6:7] in (b"D", b"R", b"Q", b"M") and head[:6].strip().isdigit()


def looks_like_sac(path: Path, head: bytes) -> bool:
    return path.suffix.lower() == ".sac"


def _channel_folder(path: Path) -> bool:
    """True when the file sits in a folder named after its NIED channel (``EW2/X.EW2.MSEED``)."""
    parts = path.name.split(".")
    return NIED_CHANNEL.match(path.parent.name) is not None and path.parent.name in parts


def search_dirs(path: Path) -> list[Path]:
    """Folders that hold the other channels of ``path``'s record (sibling channel folders)."""
    if not _channel_folder(path):
        return [path.parent]
    top = path.parent.parent
    return [d for d in sorted(top.iterdir()) if d.is_dir() and NIED_CHANNEL.match(d.name)]


def group_key(path: Path) -> str:
    """Files of one station/instrument: ``NET.STA.LOC.HN?`` from the name, else the stem.
    NIED channels: ``X.EW2.MSEED`` → ``X.??2.MSEED``, across sibling channel folders."""
    parts = path.name.split(".")
    for i in range(len(parts) - 1, -1, -1):
        chan = parts[i].split("__")[0]
        nied = NIED_CHANNEL.match(parts[i]) if i > 0 else None
        if nied:
            parts[i] = "??" + nied[2]
            folder = path.parent.parent if _channel_folder(path) else path.parent
            return str(folder / ".".join(parts))
        if len(chan) == 3 and chan[2] in "ZNE123":
            parts[i] = chan[:2] + "?" + parts[i][3:]
            return str(path.parent / ".".join(parts))
    return str(path)


def _read_stream(path: Path, fmt: str):
    import obspy

    read_bytes(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return obspy.read(library_input(path), format=_OBSPY_FORMAT[fmt])
    except Exception as exc:  # ObsPy raises assorted types on corrupt files
        raise fail(path, f"not readable as {fmt} ({type(exc).__name__}: {exc})") from exc


def find_inventory(path: Path, network: str, station: str):
    """StationXML next to the file (inside its archive for a member): ``NET.STA.xml``, then
    any ``*.xml`` holding the station."""
    import obspy

    named = sibling(path, f"{network}.{station}.xml")
    candidates = [named] if named is not None else []
    candidates += [p for p in siblings(path, "*.xml") if p not in candidates]
    for candidate in candidates:
        try:
            inventory = obspy.read_inventory(library_input(candidate))
        except Exception:  # noqa: S112 - a broken sidecar is just not used
            continue
        selected = inventory.select(network=network, station=station)
        if len(selected):
            return selected
    return None


def _channel_meta(path: Path, trace, inventory) -> tuple[float, float, float, float, float]:
    """(counts per m/s², azimuth°, dip°, lat, lon) from StationXML."""
    try:
        response = inventory.get_response(trace.id, trace.stats.starttime)
        coords = inventory.get_orientation(trace.id, trace.stats.starttime)
        where = inventory.get_coordinates(trace.id, trace.stats.starttime)
    except Exception as exc:
        raise fail(path, f"no StationXML response for {trace.id} ({exc})") from exc
    sens = response.instrument_sensitivity
    unit = (sens.input_units or "").upper() if sens else ""
    if sens is None or not sens.value:
        raise fail(path, f"{trace.id}: StationXML has no instrument sensitivity")
    if unit not in _ACC_UNITS:
        raise fail(path, f"{trace.id}: unknown/non-acceleration input units {unit!r}")
    return (
        float(sens.value) / _ACC_UNITS[unit],
        float(coords["azimuth"]),
        float(coords["dip"]),
        float(where["latitude"]),
        float(where["longitude"]),
    )


def read(paths: list[Path], fmt: str = FORMAT_MSEED, inventory=None) -> list[RawRecord]:
    import obspy

    stream = obspy.Stream()
    origin: dict[str, Path] = {}
    for path in paths:
        for trace in _read_stream(path, fmt):
            stream.append(trace)
            origin[trace.id] = path
    groups: dict[tuple[str, str, str, str], list] = defaultdict(list)
    for trace in stream:
        s = trace.stats
        groups[(s.network, s.station, s.location, _instrument(s.channel))].append(trace)
    return [_record(paths, fmt, traces, origin, inventory) for traces in groups.values()]


def _instrument(channel: str) -> str:
    """The part of a channel code shared by the 3 components: ``HN`` of ``HNZ``, ``NIED2`` of
    ``UD2``/``NS2``/``EW2``."""
    nied = NIED_CHANNEL.match(channel)
    return f"NIED{nied[2]}" if nied else channel[:2]


def _is_nied(traces: list) -> bool:
    return all(NIED_CHANNEL.match(t.stats.channel) for t in traces)


def _is_float_mseed(trace) -> bool:
    """miniSEED written with float samples (not counts); SAC, always float, is not enough."""
    encoding = str(trace.stats.get("mseed", {}).get("encoding", ""))
    return encoding.upper() in _FLOAT_ENCODINGS


def _record(paths: list[Path], fmt: str, traces: list, origin: dict, inventory) -> RawRecord:
    import obspy
    from obspy.signal.rotate import rotate2zne

    first = origin[traces[0].id]
    stream = obspy.Stream(traces)
    # before merge, which fills a gap with masked samples: one corrupt start time (a flipped
    # byte) makes a gap of weeks, gigabytes of them (get_gaps: nsamples > 0 gap, < 0 overlap)
    if any(gap[7] > 0 for gap in stream.get_gaps()):
        raise fail(first, "gaps in the data")
    try:
        stream.merge(method=0)
    except Exception as exc:
        raise fail(first, f"cannot merge traces ({exc})") from exc
    if any(np.ma.isMaskedArray(t.data) and np.ma.is_masked(t.data) for t in stream):
        raise fail(first, "gaps in the data")
    if len(stream) != 3:
        raise fail(first, f"{len(stream)} channel(s) {[t.id for t in stream]}; need 3")
    rates = {t.id: float(t.stats.sampling_rate) for t in stream}
    if len(set(rates.values())) != 1:
        raise fail(first, f"channels have different sampling rates {rates}")
    s0 = stream[0].stats
    inventory = inventory or find_inventory(first, s0.network, s0.station)
    if inventory is None and _is_nied(traces) and all(_is_float_mseed(t) for t in stream):
        return _datools_record(fmt, stream, traces, origin, first)
    if inventory is None:
        hint = "raw counts" if fmt == FORMAT_MSEED else f"{fmt} file"
        raise fail(first, f"unknown units: {hint} without a StationXML response next to it")
    start, n = _common_window(first, stream)
    metas = [_channel_meta(origin.get(t.id, first), t, inventory) for t in stream]
    data = [t.data[:n].astype(np.float64) / m[0] for t, m in zip(stream, metas, strict=True)]
    args = []
    for samples, meta in zip(data, metas, strict=True):
        args += [samples, meta[1], meta[2]]
    try:
        z, north, east = rotate2zne(*args)
    except ValueError as exc:
        raise fail(first, f"cannot rotate to ZNE ({exc})") from exc
    record = RawRecord(
        waveform_mps2=np.vstack([z, north, east]),
        sampling_rate_hz=float(s0.sampling_rate),
        start_time=start.isoformat(),
        station_network=s0.network,
        station_code=s0.station,
        station_latitude_deg=metas[0][3],
        station_longitude_deg=metas[0][4],
        source_files=tuple(sorted({str(origin.get(t.id, first)) for t in traces})),
        source_format=fmt,
        orientation_note="rotated to ZNE with StationXML azimuth/dip",
    )
    return check_record(record)


def _common_window(first: Path, stream):  # -> (obspy.UTCDateTime, int)
    """Trim the channels to the time they all cover; (start, samples per channel)."""
    start = max(t.stats.starttime for t in stream)
    end = min(t.stats.endtime for t in stream)
    if end - start < 1.0:
        raise fail(first, "channels do not overlap in time")
    stream.trim(start, end, nearest_sample=False)
    return start, min(len(t) for t in stream)


def station_from_name(path: Path, header_code: str) -> str:
    """The full NIED station code from ``<code><yymmddhhmm>.…`` when the header's is a cut of it."""
    match = _NIED_STEM.match(path.name.split(".")[0])
    if match and match[1] != header_code and match[1].startswith(header_code):
        return match[1]
    return header_code


def _datools_record(fmt: str, stream, traces: list, origin: dict, first: Path) -> RawRecord:
    """NIED-channel float miniSEED without StationXML (datools): samples in g, UD/NS/EW → ZNE."""
    by_component = {_NIED_COMPONENT[t.stats.channel[:2].upper()]: t for t in stream}
    if set(by_component) != {"Z", "N", "E"}:
        channels = sorted(t.stats.channel for t in stream)
        raise fail(first, f"NIED channels {channels}; need UD, NS and EW")
    start, n = _common_window(first, stream)
    z, north, east = (
        by_component[c].data[:n].astype(np.float64) * DATOOLS_UNIT_MPS2 for c in "ZNE"
    )
    s0 = by_component["Z"].stats
    sensor = "borehole" if s0.channel.endswith("1") else "surface"
    record = RawRecord(
        waveform_mps2=np.vstack([z, north, east]),
        sampling_rate_hz=float(s0.sampling_rate),
        start_time=start.isoformat(),
        station_network=s0.network or "BO",
        station_code=station_from_name(first, s0.station),
        sensor=sensor,
        source_files=tuple(sorted({str(origin.get(t.id, first)) for t in traces})),
        source_format=fmt,
        orientation_note="NIED channels UD/NS/EW taken as Z/N/E; float samples taken as g "
        "(datools miniSEED, no StationXML)",
        extra={"header_station": s0.station, "unit": "g"},
    )
    return check_record(record)
