"""ITACA processed records (gmpe-smtk): ``<id>_{H1,H2,V}.cor.acc`` + ``<id>.metadata``.

``.cor.acc``: 10 header lines (``Orientation : NS|WE|UP``, ``Time Increment (s)``,
``Number of Data``,
``PGA (m/s/s)``), then 5 values per line in E14.7 fields that can abut (parsed by regex), m/s².
Mapping by the ``Orientation`` line: UP→Z, NS→N, WE/EW→E (H1/H2 names are not trusted).
``<id>.metadata``: one-row CSV with ESM-flatfile columns; ``station.vs30`` is the label and
``station.vs30_measured_type`` (DH, CH, MASW, ESAC…) marks it "measured" (the
``station.vs30_measured`` flag is 0 in these files and contradicts the type, so it is ignored).
The records are trimmed (leading/trailing zeros removed), so the first-sample time is unknown:
``start_time`` is None; the event origin time is kept.
"""

from __future__ import annotations

import csv
import io
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
    sibling,
    stack_zne,
    to_float,
)

FORMAT = "itaca"
N_HEADER_LINES = 10
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[EeDd][-+]?\d+)?")
_ORIENTATION = {"UP": "Z", "UD": "Z", "Z": "Z", "NS": "N", "N": "N", "WE": "E", "EW": "E", "E": "E"}
_MEASURED_TYPES = ("DH", "CH", "MASW", "ESAC", "SASW", "SCPT", "PS", "REMI", "HVSR")


def looks_like(path: Path, head: bytes) -> bool:
    return path.name.lower().endswith(".cor.acc") or (
        b"Time Increment (s)" in head and b"Orientation" in head
    )


def group_key(path: Path) -> str:
    return str(path.parent / re.sub(r"_(H1|H2|V)\.cor\.acc$", "", path.name, flags=re.I))


def metadata_path(path: Path) -> Path:
    return Path(group_key(path) + ".metadata")


def _parse(path: Path) -> tuple[dict[str, str], np.ndarray]:
    lines = read_text_lines(path)
    if len(lines) <= N_HEADER_LINES:
        raise fail(path, "header only, no samples (truncated?)")
    header = {}
    for line in lines[:N_HEADER_LINES]:
        key, sep, value = line.partition(":")
        if sep:
            header[key.strip()] = value.strip()
    if "Time Increment (s)" not in header or "Number of Data" not in header:
        raise fail(path, "not a .cor.acc file (no 'Time Increment (s)' / 'Number of Data')")
    body = "".join(lines[N_HEADER_LINES:])
    if re.search(r"nan|inf", body, re.I):
        raise fail(path, "NaN/inf samples")
    # Fortran exponents in either case (1.0D-03, 1.0d-03); an overflowing one is inf
    samples = np.array(_NUMBER.findall(body.upper().replace("D", "E")), dtype=np.float64)
    if not np.isfinite(samples).all():
        raise fail(path, "NaN/inf samples")
    n_stated = int(to_float(path, header["Number of Data"], "Number of Data"))
    if samples.size != n_stated:
        raise fail(path, f"Number of Data {n_stated} but {samples.size} samples (truncated?)")
    return header, samples


def _metadata(path: Path) -> dict[str, str]:
    meta_path = sibling(path, metadata_path(path).name)
    if meta_path is None:
        return {}
    rows = list(csv.DictReader(io.StringIO("\n".join(read_text_lines(meta_path)))))
    if len(rows) != 1:
        raise fail(meta_path, f"{len(rows)} rows, expected one")
    return {k: (v or "").strip() for k, v in rows[0].items() if k}


def _vs30(meta: dict[str, str]) -> tuple[float | None, str | None]:
    vs30 = optional_float(meta.get("station.vs30"))
    if not vs30:
        return None, None
    kind = meta.get("station.vs30_measured_type", "").upper()
    measured = any(kind.startswith(t) for t in _MEASURED_TYPES)
    return vs30, "measured" if measured else "unknown"


def _iso(text: str | None) -> str | None:
    try:
        return datetime.fromisoformat((text or "").strip()).isoformat()
    except ValueError:
        return None


def read(paths: list[Path]) -> list[RawRecord]:
    components: dict[str, np.ndarray] = {}
    dts: dict[str, float] = {}
    header_code = ""
    for path in paths:
        header, samples = _parse(path)
        comp = _ORIENTATION.get(header.get("Orientation", "").upper())
        if comp is None:
            raise fail(path, f"unknown orientation {header.get('Orientation')!r}")
        add_component(path, components, comp, samples)  # already m/s²
        dts[comp] = to_float(path, header["Time Increment (s)"], "Time Increment (s)")
        header_code = header.get("Station Code / Name", "").split("/")[0].strip()
    first = paths[0]
    require_zne(first, components)
    if len(set(dts.values())) != 1 or dts["Z"] <= 0:
        raise fail(first, f"components have different or invalid time steps {dts}")
    meta = _metadata(first)
    vs30, method = _vs30(meta)
    origin = _iso(meta.get("event.datetime"))
    record = RawRecord(
        waveform_mps2=stack_zne(first, components["Z"], components["N"], components["E"]),
        sampling_rate_hz=1.0 / dts["Z"],
        start_time=None,
        station_network="IT",
        station_code=meta.get("station.code") or header_code,
        station_latitude_deg=optional_float(meta.get("station.latitude")),
        station_longitude_deg=optional_float(meta.get("station.longitude")),
        vs30_mps=vs30,
        vs30_method=method,
        event_id=f"ITACA:{meta['event.unid']}" if meta.get("event.unid") else None,
        event_magnitude=optional_float(meta.get("event.pref_mag")),
        event_magnitude_type=meta.get("event.pref_mag_type") or None,
        event_latitude_deg=optional_float(meta.get("event.latitude")),
        event_longitude_deg=optional_float(meta.get("event.longitude")),
        event_depth_km=optional_float(meta.get("event.focaldepth")),
        event_origin_time=origin,
        hyp_distance_km=optional_float(meta.get("distance_rhyp")),
        source_files=tuple(str(p) for p in paths),
        source_format=FORMAT,
        extra={"vs30_measured_type": meta.get("station.vs30_measured_type")},
    )
    return [check_record(record)]
