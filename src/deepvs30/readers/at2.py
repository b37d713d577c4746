"""PEER NGA ``.AT2`` files: 4 header lines (``NPTS=…, DT=… SEC``), acceleration in g (×9.80665).

One component per file; the component is taken from the file name: a channel code
(``….BH1.00.AT2``, ``…HNZ…``: Z/N/E, 1→N, 2→E, with ``orientation_note``) or a PEER suffix
(``_UP``/``-UP``/``DWN``/``V`` → Z; a 3-digit azimuth like ``GIL067`` → horizontal at 67°, the two
horizontals rotated to N/E with ObsPy's ``rotate2zne``). Files sharing the rest of the name form
one record. AT2 carries no station coordinates, start time or Vs30.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from deepvs30.readers.base import (
    G_MPS2,
    RawRecord,
    add_component,
    check_record,
    fail,
    read_text_lines,
    to_float,
)

FORMAT = "at2"
_NPTS = re.compile(r"NPTS\s*=\s*(\d+)\s*,?\s*DT\s*=\s*([\d.Ee+-]+)", re.I)
_CHANNEL = re.compile(r"\.([A-Z]{2})([ZNE12])\.", re.I)
_SEED_ID = re.compile(r"(?:^|[_.])([A-Z0-9]{1,2})\.([A-Z0-9]{1,5})\.[A-Z]{2}[ZNE12?]\.", re.I)
_SUFFIX = re.compile(r"(?P<sep>[_-]?)(?P<comp>UP|DWN|DN|V|\d{3})$", re.I)


def looks_like(path: Path, head: bytes) -> bool:
    return head.startswith(b"PEER NGA") or path.suffix.upper() == ".AT2"


def _component(path: Path) -> tuple[str, str, float | None]:
    """(group key, component Z/N/E/H, horizontal azimuth in degrees or None)."""
    stem = path.stem
    match = _CHANNEL.search(stem)
    if match:
        comp = {"1": "N", "2": "E"}.get(match[2].upper(), match[2].upper())
        key = stem[: match.start()] + f".{match[1]}?." + stem[match.end() :]
        return str(path.parent / key), comp, None
    match = _SUFFIX.search(stem)
    if match:
        token = match["comp"].upper()
        key = str(path.parent / stem[: match.start()])
        if token in ("UP", "DWN", "DN", "V"):
            return key, "Z", None
        return key, "H", float(token) % 360
    raise fail(path, "component not recognisable from the file name")


def group_key(path: Path) -> str:
    try:
        return _component(path)[0]
    except Exception:
        return str(path)


def _parse(path: Path) -> tuple[float, np.ndarray]:
    lines = read_text_lines(path)
    if len(lines) < 5 or not lines[0].startswith("PEER NGA"):
        raise fail(path, "not a PEER AT2 file (no 'PEER NGA' header)")
    if "UNITS OF G" not in lines[2].upper():
        raise fail(path, f"unknown units (line 3: {lines[2].strip()!r})")
    match = _NPTS.search(lines[3])
    if match is None:
        raise fail(path, f"no NPTS/DT on line 4 ({lines[3].strip()!r})")
    n_stated = int(match[1])
    dt_s = to_float(path, match[2], "DT")
    if dt_s <= 0:
        raise fail(path, f"DT {dt_s} s")
    try:
        samples_g = np.array(" ".join(lines[4:]).split(), dtype=np.float64)
    except ValueError as exc:
        raise fail(path, f"non-numeric sample ({exc})") from exc
    if samples_g.size != n_stated:
        raise fail(path, f"NPTS {n_stated} but {samples_g.size} samples (truncated?)")
    return dt_s, samples_g * G_MPS2


def _horizontals(
    path: Path, horiz: list[tuple[float, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    from obspy.signal.rotate import rotate2zne

    (az1, h1), (az2, h2) = horiz
    if abs(((az2 - az1) % 180) - 90) > 1:
        raise fail(path, f"horizontals at {az1}° and {az2}° are not orthogonal")
    zero = np.zeros_like(h1)
    _, north, east = rotate2zne(zero, 0, -90, h1, az1, 0, h2, az2, 0)
    return north, east


def read(paths: list[Path]) -> list[RawRecord]:
    comps: dict[str, np.ndarray] = {}
    horiz: list[tuple[float, np.ndarray]] = []
    dts = set()
    note = ""
    for path in paths:
        _, comp, azimuth = _component(path)
        dt_s, samples = _parse(path)
        dts.add(dt_s)
        if comp == "H":
            horiz.append((azimuth or 0.0, samples))
        else:
            add_component(path, comps, comp, samples)
        if _CHANNEL.search(path.stem) and _CHANNEL.search(path.stem)[2] in "12":
            note = "channels 1/2 taken as N/E (no azimuth in AT2)"
    first = paths[0]
    if len(horiz) == 2 and not ({"N", "E"} & set(comps)):
        comps["N"], comps["E"] = _horizontals(first, horiz)
        note = f"horizontals at {horiz[0][0]:g}° and {horiz[1][0]:g}° rotated to N/E"
    n_found = len(comps) + (len(horiz) if "N" not in comps else 0)
    if set(comps) != {"Z", "N", "E"}:
        raise fail(first, f"{n_found} component(s) in {len(paths)} file(s); need 3 (Z, N, E)")
    if len(dts) != 1:
        raise fail(first, f"components have different time steps {sorted(dts)}")
    lengths = {c: len(v) for c, v in comps.items()}
    if len(set(lengths.values())) != 1:
        raise fail(first, f"components have different lengths {lengths}")
    key = Path(group_key(first)).name
    seed = _SEED_ID.search(key)
    network, station = (seed[1], seed[2]) if seed else ("", re.sub(r"^RSN\d+_", "", key))
    record = RawRecord(
        waveform_mps2=np.vstack([comps["Z"], comps["N"], comps["E"]]),
        sampling_rate_hz=1.0 / dts.pop(),
        start_time=None,
        station_network=network,
        station_code=station,
        source_files=tuple(str(p) for p in paths),
        source_format=FORMAT,
        orientation_note=note,
    )
    return [check_record(record)]
