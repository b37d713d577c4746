"""AFAD MATLAB records (struct ``EQ.anEQ``), as shared by the CNNLSTM_DeepEQ authors.

Fields used: ``Accel`` (N×3, gal, columns N-S, E-W, U-D as in AFAD's text format; the .mat does
not document the order), ``sampling`` (s), ``statID``, ``statco`` [lat, lon], ``epicenter``
[lat, lon], ``depth`` (metres), ``magnitudeval``/``magnitudetype``, ``Vs30`` (m/s, 0 = unknown),
``Rhyp`` (km), ``Ptime``/``Stime`` (s from record start).
``date``/``recordtime`` are MATLAB datetime objects scipy cannot decode: the event origin time is
taken from the file name ``YYYYMMDDhhmmss_<station>.mat`` (GMT), and the record start time is
approximated by it (``start_time`` = origin time; ``extra['start_time_approx']`` is True).
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
    library_input,
    read_bytes,
)

FORMAT = "afad-mat"
_NAME = re.compile(r"^(?P<time>\d{14})_(?P<station>\w+)$")


def looks_like(path: Path, head: bytes) -> bool:
    return head.startswith(b"MATLAB 5.0 MAT-file") or path.suffix.lower() == ".mat"


def _field(struct: np.ndarray, name: str) -> np.ndarray | None:
    return struct[name] if name in (struct.dtype.names or ()) else None


def _scalar(struct: np.ndarray, name: str) -> float | None:
    value = _field(struct, name)
    if value is None or np.size(value) != 1:
        return None
    try:
        out = float(np.asarray(value, dtype=np.float64).ravel()[0])
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _pair(struct: np.ndarray, name: str) -> tuple[float | None, float | None]:
    value = _field(struct, name)
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None, None
    return (float(arr[0]), float(arr[1])) if arr.size == 2 else (None, None)


def _text(struct: np.ndarray, name: str) -> str | None:
    value = _field(struct, name)
    if value is None or np.size(value) == 0:
        return None
    return str(np.asarray(value).ravel()[0]).strip() or None


def _load_struct(path: Path) -> np.ndarray:
    import scipy.io as sio

    read_bytes(path)  # empty / unreadable file -> ReaderError
    try:
        mat = sio.loadmat(library_input(path))
        return mat["EQ"][0, 0]["anEQ"][0, 0]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise fail(path, f"not an AFAD EQ.anEQ .mat struct ({exc})") from exc
    except Exception as exc:  # scipy raises many types on corrupt files (struct.error, ...)
        raise fail(path, f"unreadable MATLAB file ({type(exc).__name__}: {exc})") from exc


def _origin_from_name(path: Path) -> tuple[str | None, str | None]:
    match = _NAME.match(path.stem)
    if match is None:
        return None, None
    try:
        t = datetime.strptime(match["time"], "%Y%m%d%H%M%S")
    except ValueError:
        return None, match["station"]
    return t.strftime("%Y-%m-%dT%H:%M:%S"), match["station"]


def read(paths: list[Path]) -> list[RawRecord]:
    return [read_one(p) for p in paths]


def read_one(path: Path) -> RawRecord:
    eq = _load_struct(path)
    accel = _field(eq, "Accel")
    if accel is None:
        raise fail(path, "no Accel field")
    try:
        accel_gal = np.asarray(accel, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise fail(path, f"Accel is not numeric ({exc})") from exc
    if accel_gal.ndim != 2 or accel_gal.shape[1] != 3:
        raise fail(path, f"Accel shape {accel_gal.shape}, expected (n, 3) N-S, E-W, U-D")
    dt_s = _scalar(eq, "sampling")
    if dt_s is None or dt_s <= 0:
        raise fail(path, f"missing sampling interval ({dt_s!r})")
    origin, name_station = _origin_from_name(path)
    stat_id = _scalar(eq, "statID")
    station = f"{int(stat_id):04d}" if stat_id is not None else (name_station or "")
    depth_m = _scalar(eq, "depth")
    vs30 = _scalar(eq, "Vs30")
    ev_lat, ev_lon = _pair(eq, "epicenter")
    st_lat, st_lon = _pair(eq, "statco")
    waveform = accel_gal[:, [2, 0, 1]].T * GAL_TO_MPS2  # (U-D, N-S, E-W) -> ZNE
    record = RawRecord(
        waveform_mps2=waveform,
        sampling_rate_hz=1.0 / dt_s,
        start_time=origin,
        station_network="TK",
        station_code=station,
        station_latitude_deg=st_lat,
        station_longitude_deg=st_lon,
        vs30_mps=vs30 if vs30 else None,
        vs30_method="unknown" if vs30 else None,
        event_id=f"AFAD:{path.stem.split('_')[0]}" if origin else None,
        event_magnitude=_scalar(eq, "magnitudeval"),
        event_magnitude_type=_text(eq, "magnitudetype"),
        event_latitude_deg=ev_lat,
        event_longitude_deg=ev_lon,
        event_depth_km=depth_m / 1000.0 if depth_m is not None else None,
        event_origin_time=origin,
        hyp_distance_km=_scalar(eq, "Rhyp"),
        p_arrival_s=_scalar(eq, "Ptime"),
        s_arrival_s=_scalar(eq, "Stime"),
        source_files=(str(path),),
        source_format=FORMAT,
        orientation_note="Accel columns taken as N-S, E-W, U-D (AFAD convention)",
        extra={"start_time_approx": True, "pga_header_gal": _field(eq, "pga")},
    )
    return check_record(record)
