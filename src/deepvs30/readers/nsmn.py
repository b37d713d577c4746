"""AFAD / NSMN (Türkiye) strong-motion text records.

18 header lines (``STRONG GROUND MOTION RECORDS OF TURKIYE``, ``KEY : value``), a column header
``N-S E-W U-D`` and three columns of acceleration in gal (cm/s²). ``RECORD TIME`` (GMT) is the
first sample, ``SAMPLING INTERVAL (sec)`` the step. Component mapping: U-D→Z, N-S→N, E-W→E.
Vs30 is not in the file (join it from the AFAD station list).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np

from deepvs30.readers.base import (
    GAL_TO_MPS2,
    RawRecord,
    check_record,
    fail,
    optional_float,
    read_text_lines,
    stack_zne,
    to_float,
)

FORMAT = "nsmn"
MAGIC = b"STRONG GROUND MOTION RECORDS OF TURKIYE"
_COORD = re.compile(r"([\d.]+)\s*([NS])\s*-\s*([\d.]+)\s*([EW])")


def looks_like(path: Path, head: bytes) -> bool:
    return head.lstrip().startswith(MAGIC)


def _parse_header(path: Path, lines: list[str]) -> tuple[dict[str, str], int]:
    header: dict[str, str] = {}
    for i, line in enumerate(lines[:40]):
        if "N-S" in line and "E-W" in line and "U-D" in line and ":" not in line:
            return header, i + 1
        if ":" in line:
            key, value = line.split(":", 1)
            header[key.strip().upper()] = value.strip()
    raise fail(path, "no 'N-S E-W U-D' column header within the first 40 lines (truncated?)")


def _coords(text: str | None) -> tuple[float | None, float | None]:
    match = _COORD.search(text or "")
    if match is None:
        return None, None
    lat = float(match[1]) * (-1 if match[2] == "S" else 1)
    lon = float(match[3]) * (-1 if match[4] == "W" else 1)
    return lat, lon


def _time(text: str | None, fmt: str) -> str | None:
    if not text:
        return None
    text = text.replace("(GMT)", "").strip()
    for candidate in (fmt, fmt.replace(".%f", "")):
        try:
            return datetime.strptime(text, candidate).isoformat()
        except ValueError:
            continue
    return None


def _columns(path: Path, lines: list[str]) -> np.ndarray:
    body = "\n".join(lines)
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError as exc:
        raise fail(path, f"non-numeric sample ({exc})") from exc
    if values.size == 0 or values.size % 3:
        raise fail(path, f"{values.size} samples do not fill 3 columns (truncated?)")
    return values.reshape(-1, 3)


def read(paths: list[Path]) -> list[RawRecord]:
    return [read_one(p) for p in paths]


def read_one(path: Path) -> RawRecord:
    lines = read_text_lines(path)
    if not lines or MAGIC.decode() not in lines[0]:
        raise fail(path, "not an AFAD/NSMN text record (first line)")
    header, first = _parse_header(path, lines)
    dt_s = to_float(path, header.get("SAMPLING INTERVAL (SEC)", ""), "SAMPLING INTERVAL")
    if dt_s <= 0:
        raise fail(path, f"sampling interval {dt_s} s")
    data_gal = _columns(path, lines[first:])
    n_stated = optional_float(header.get("NUMBER OF DATA"))
    if n_stated is not None and int(n_stated) != len(data_gal):
        raise fail(path, f"NUMBER OF DATA {int(n_stated)} but {len(data_gal)} rows (truncated?)")
    ns, ew, ud = (data_gal[:, i] * GAL_TO_MPS2 for i in range(3))
    st_lat, st_lon = _coords(header.get("STATION COORDINATES"))
    ev_lat, ev_lon = _coords(header.get("EPICENTER COORDINATES"))
    mag = (header.get("EARTHQUAKE MAGNITUDE") or "").split()
    origin = _time(header.get("EARTHQUAKE DATE"), "%Y/%m/%d %H:%M:%S")
    station = header.get("STATION ID", "").strip()
    if not station:
        raise fail(path, "no STATION ID")
    record = RawRecord(
        waveform_mps2=stack_zne(path, ud, ns, ew),
        sampling_rate_hz=1.0 / dt_s,
        start_time=_time(header.get("RECORD TIME"), "%d/%m/%Y %H:%M:%S.%f"),
        station_network="TK",
        station_code=station,
        station_latitude_deg=st_lat,
        station_longitude_deg=st_lon,
        event_id=f"AFAD:{origin.replace('-', '').replace(':', '').replace('T', '')}"
        if origin
        else None,
        event_magnitude=optional_float(mag[0]) if mag else None,
        event_magnitude_type=mag[1] if len(mag) > 1 else None,
        event_latitude_deg=ev_lat,
        event_longitude_deg=ev_lon,
        event_depth_km=optional_float(header.get("EARTHQUAKE DEPTH (KM)")),
        event_origin_time=origin,
        source_files=(str(path),),
        source_format=FORMAT,
        extra={"pga_header_gal": header.get("RAW PGA VALUES (GAL)")},
    )
    return check_record(record)
