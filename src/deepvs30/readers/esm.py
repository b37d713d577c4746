"""ESM / ITACA ASCII (DYNA 1.2 header, ``KEY: value`` lines, then one column of samples).

One file per component (stream ``HNE``/``HNN``/``HNZ`` or ``..1``/``..2``); files of one
station and event are grouped into a 3-component record. ``UNITS`` must be cm/s^2 (→ ×0.01) or
m/s^2. ``VS30_M/S`` (blank or ``None`` = unknown; method not stated → "unknown"),
``DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS`` is the first sample (UTC; ``20190728_160919.870``
or ``2019/07/28 16:09:19.8700000`` — digits beyond microseconds are dropped).

AFAD TADAS downloads (``<event>_<station>_{ap|mp}_AAD_Acc_{E|N|U}.asc``) put a preamble of
``AAD_*`` lines (``AAD_Filtered_TADAS_FILE``, baseline correction, filter type/order/corners)
before ``EVENT_NAME:``; it is skipped and kept in ``extra["preamble"]``. Their station codes are
4 digits with a leading zero (``0120``, network ``TK``), kept as text. Components with the
same first-sample time whose lengths differ by at most 2 trailing samples are cut to the
shortest (``extra["trimmed_tail_samples"]``); larger differences are refused.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np

from deepvs30.readers.base import (
    RawRecord,
    add_component,
    check_record,
    fail,
    optional_float,
    read_text_lines,
    require_zne,
    stack_zne,
    to_float,
)

FORMAT = "esm"
UNIT_TO_MPS2 = {"cm/s^2": 0.01, "cm/s/s": 0.01, "cm/s2": 0.01, "m/s^2": 1.0, "m/s/s": 1.0}
_KEY = re.compile(r"^[A-Z][A-Z0-9_/^.()\-]*$")
_TIME_FORMATS = (
    "%Y%m%d_%H%M%S.%f",
    "%Y%m%d_%H%M%S",
    "%Y/%m/%d %H:%M:%S.%f",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S.%f",
    "%d/%m/%Y %H:%M:%S",
)
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+$")  # strptime's %f takes at most 6 digits
MAX_TAIL_TRIM_SAMPLES = 2  # same start, last sample(s) missing on one component
PREAMBLE_PREFIX = "AAD_"  # AFAD TADAS lines before EVENT_NAME:
MAX_PREAMBLE_LINES = 20


def _skip_preamble(lines: list[str]) -> tuple[dict[str, str], int]:
    """``AAD_*`` lines before the DYNA header as a dict, and the index of the first other line."""
    preamble: dict[str, str] = {}
    for i, line in enumerate(lines[:MAX_PREAMBLE_LINES]):
        if not line.startswith(PREAMBLE_PREFIX):
            return preamble, i
        key, _, value = line.partition(":")
        preamble[key.strip()] = value.strip()
    return preamble, min(len(lines), MAX_PREAMBLE_LINES)


def looks_like(path: Path, head: bytes) -> bool:
    lines = head.decode("latin-1").splitlines()
    _, first = _skip_preamble(lines)
    body = "\n".join(lines[first:])
    return body.startswith("EVENT_NAME:") and "STATION_CODE:" in body


def _parse(path: Path) -> tuple[dict[str, str], dict[str, str], np.ndarray]:
    """(header, preamble, samples) of one component file."""
    lines = read_text_lines(path)
    preamble, start = _skip_preamble(lines)
    lines = lines[start:]
    header: dict[str, str] = {}
    first = None
    for i, line in enumerate(lines[:200]):
        key, sep, value = line.partition(":")
        if sep and _KEY.match(key.strip()):
            header[key.strip().upper()] = value.strip()
        elif line.strip():
            first = i
            break
    if first is None or "NDATA" not in header:
        raise fail(path, "ESM header not terminated or NDATA missing (truncated?)")
    try:
        samples = np.array(" ".join(lines[first:]).split(), dtype=np.float64)
    except ValueError as exc:
        raise fail(path, f"non-numeric sample ({exc})") from exc
    n_stated = int(to_float(path, header["NDATA"], "NDATA"))
    if n_stated != samples.size:
        raise fail(path, f"NDATA {n_stated} but {samples.size} samples (truncated?)")
    return header, preamble, samples


def _time(text: str | None) -> str | None:
    text = _LONG_FRACTION.sub(r"\1", (text or "").strip())
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).isoformat()
        except ValueError:
            continue
    return None


def _origin(header: dict[str, str]) -> str | None:
    date = header.get("EVENT_DATE_YYYYMMDD", "").replace("/", "")
    time = header.get("EVENT_TIME_HHMMSS", "").replace(":", "")
    return _time(f"{date}_{time}") if date and time else None


def _component(path: Path, header: dict[str, str]) -> str:
    stream = header.get("STREAM", "").strip().upper()
    code = stream[-1:] if stream else path.stem.split("_")[-1][-1:].upper()
    mapping = {"Z": "Z", "N": "N", "E": "E", "1": "N", "2": "E", "U": "Z"}
    if code not in mapping:
        raise fail(path, f"unknown component {stream!r}")
    return mapping[code]


def _trim_tail(components: dict[str, np.ndarray], headers: dict[str, dict[str, str]]) -> int:
    """Cut components that start at the same stated time to the shortest one when they differ
    by at most :data:`MAX_TAIL_TRIM_SAMPLES` at the end (TADAS files: NDATA 2879/2878/2879).
    Returns the most samples cut; larger differences are left for ``stack_zne`` to refuse."""
    starts = {h.get("DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS", "") for h in headers.values()}
    lengths = {c: len(v) for c, v in components.items()}
    shortest = min(lengths.values())
    cut = max(lengths.values()) - shortest
    if cut == 0 or cut > MAX_TAIL_TRIM_SAMPLES or len(starts) != 1 or "" in starts:
        return 0
    for comp, samples in components.items():
        components[comp] = samples[:shortest]
    return cut


def group_key(path: Path) -> str:
    """ESM files of one record share everything but the channel letter in their name."""
    name = path.name
    for chan in ("HNE.", "HNN.", "HNZ.", "HN1.", "HN2.", "HGE.", "HGN.", "HGZ."):
        name = name.replace(f".{chan}", ".HN?.")
    for suffix in ("_E.asc", "_N.asc", "_U.asc", "_Z.asc"):
        if name.endswith(suffix):
            name = name[: -len(suffix)] + "_?.asc"
    return str(path.parent / name)


def read(paths: list[Path]) -> list[RawRecord]:
    """One record from the component files of one station and event."""
    components: dict[str, np.ndarray] = {}
    headers: dict[str, dict[str, str]] = {}
    preamble: dict[str, str] = {}
    for path in paths:
        header, preamble, samples = _parse(path)
        unit = header.get("UNITS", "").strip().lower()
        if unit not in UNIT_TO_MPS2:
            raise fail(path, f"unknown units {unit!r}")
        comp = _component(path, header)
        add_component(path, components, comp, samples * UNIT_TO_MPS2[unit])
        headers[comp] = header
    first = paths[0]
    require_zne(first, components)
    rates = {
        c: 1.0 / to_float(paths[0], h.get("SAMPLING_INTERVAL_S", ""), "SAMPLING_INTERVAL_S")
        for c, h in headers.items()
    }
    if len({round(r, 6) for r in rates.values()}) != 1:
        raise fail(first, f"components have different sampling rates {rates}")
    trimmed = _trim_tail(components, headers)
    h = headers["Z"]
    vs30 = optional_float(h.get("VS30_M/S"))
    mag_w, mag_l = optional_float(h.get("MAGNITUDE_W")), optional_float(h.get("MAGNITUDE_L"))
    record = RawRecord(
        waveform_mps2=stack_zne(first, components["Z"], components["N"], components["E"]),
        sampling_rate_hz=rates["Z"],
        start_time=_time(h.get("DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS")),
        station_network=h.get("NETWORK", ""),
        station_code=h.get("STATION_CODE", ""),
        station_latitude_deg=optional_float(h.get("STATION_LATITUDE_DEGREE")),
        station_longitude_deg=optional_float(h.get("STATION_LONGITUDE_DEGREE")),
        vs30_mps=vs30,
        vs30_method="unknown" if vs30 else None,
        event_id=h.get("EVENT_ID") or None,
        event_magnitude=mag_w if mag_w is not None else mag_l,
        event_magnitude_type="Mw" if mag_w is not None else ("ML" if mag_l is not None else None),
        event_latitude_deg=optional_float(h.get("EVENT_LATITUDE_DEGREE")),
        event_longitude_deg=optional_float(h.get("EVENT_LONGITUDE_DEGREE")),
        event_depth_km=optional_float(h.get("EVENT_DEPTH_KM")),
        event_origin_time=_origin(h),
        sensor="borehole" if (optional_float(h.get("SENSOR_DEPTH_M")) or 0) > 0 else "surface",
        source_files=tuple(str(p) for p in paths),
        source_format=FORMAT,
        extra={
            "pga_header_mps2": {
                c: (optional_float(hh.get("PGA_CM/S^2")) or 0) * 0.01 for c, hh in headers.items()
            },
            "preamble": preamble,
            "trimmed_tail_samples": trimmed,
        },
    )
    return [check_record(record)]
