"""What every reader returns: :class:`RawRecord`, one 3-component record in m/s², ZNE order.

Readers are leaves: each knows one format family and nothing about datasets, labels or models.
Every failure is a :class:`~deepvs30.errors.ReaderError` naming the file and the reason.
A reader's files are paths on disk or :class:`MemberFile` objects (archive members held in
memory); readers read them with :func:`read_bytes` / :func:`read_text_lines`, hand them to
ObsPy or SciPy as :func:`library_input` and find files next to them with :func:`sibling` /
:func:`siblings`.

Component mapping to ZNE (all readers):

- Z: vertical (U-D, UD, Z, V, UP, channel code ..Z);
- N: north-south (N-S, NS, N, channel ..N), or channel ``1`` / first horizontal when the file gives
  no azimuth; E: east-west (E-W, EW, WE, E, channel ..E), or channel ``2`` / second horizontal.
- Where the source states the horizontal azimuths (StationXML, COSMOS header), the horizontals are
  rotated to N/E with :func:`obspy.signal.rotate.rotate2zne`. Where it does not (``1``/``2``
  channels without metadata), ``1`` is taken as N and ``2`` as E and ``orientation_note`` says so.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from deepvs30.errors import ReaderError

G_MPS2 = 9.80665
GAL_TO_MPS2 = 0.01  # 1 gal = 1 cm/s²
MAX_PGA_G = 20.0  # a larger peak means wrong units (e.g. counts read as gal)
MIN_SAMPLES = 10
MAX_TEXT_BYTES = 200 * 1024 * 1024
MEMBER_SEPARATOR = ":"  # archive members are named <archive>:<member>

Sensor = Literal["surface", "borehole"]
Vs30Method = Literal["measured", "proxy", "unknown"]


@dataclass
class RawRecord:
    """One 3-component acceleration record as read from a source file (or file group)."""

    waveform_mps2: np.ndarray  # (3, n) float64, ZNE, m/s²
    sampling_rate_hz: float
    start_time: str | None  # UTC ISO 8601 of the first sample (None where the source lacks it)
    station_network: str
    station_code: str
    station_latitude_deg: float | None = None
    station_longitude_deg: float | None = None
    vs30_mps: float | None = None
    vs30_method: Vs30Method | None = None
    event_id: str | None = None
    event_magnitude: float | None = None
    event_magnitude_type: str | None = None
    event_latitude_deg: float | None = None
    event_longitude_deg: float | None = None
    event_depth_km: float | None = None
    event_origin_time: str | None = None  # UTC ISO 8601
    hyp_distance_km: float | None = None
    p_arrival_s: float | None = None  # seconds after the first sample, as given by the source
    s_arrival_s: float | None = None
    sensor: Sensor = "surface"
    source_files: tuple[str, ...] = ()
    source_format: str = ""
    orientation_note: str = ""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def n_samples(self) -> int:
        return int(self.waveform_mps2.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sampling_rate_hz

    @property
    def source_file(self) -> str:
        return ";".join(self.source_files)


@dataclass(frozen=True, eq=False)
class MemberFile:
    """A file inside an archive, taken by the readers in place of a path and never written to
    disk (:mod:`deepvs30.readers.archives` makes them).

    ``str()`` is the name users see, ``<archive>:<member>``. ``name``, ``stem``, ``suffix`` and
    ``parent`` are those of the member's path inside the archive (a ``PurePosixPath``), so group
    keys and the names of files next to it are made as for files on disk. ``data`` is None
    until the member is loaded; ``nearby`` maps member paths to the loaded files that
    :func:`sibling` finds next to it (its file group and the archive's kept sidecars)."""

    archive: Path
    member: str  # the member's path inside the archive, "/"-separated
    size: int
    data: bytes | None = field(default=None, repr=False)
    nearby: Mapping[str, MemberFile] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return f"{self.archive}{MEMBER_SEPARATOR}{self.member}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MemberFile):
            return NotImplemented
        return (self.archive, self.member) == (other.archive, other.member)

    def __hash__(self) -> int:
        return hash((self.archive, self.member))

    def __lt__(self, other: MemberFile) -> bool:  # the order of the same files on disk
        return (str(self.archive), self.path) < (str(other.archive), other.path)

    @property
    def path(self) -> PurePosixPath:
        return PurePosixPath(self.member)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def suffix(self) -> str:
        return self.path.suffix

    @property
    def parent(self) -> PurePosixPath:
        return self.path.parent

    def with_suffix(self, suffix: str) -> PurePosixPath:
        return self.path.with_suffix(suffix)


Source = Path | MemberFile  # what readers take as a file


def fail(path: str | Path | MemberFile, reason: str) -> ReaderError:
    """The error to raise: ``raise fail(path, "reason")``."""
    return ReaderError(str(path), reason)


def sibling(path: Source, name: str) -> Source | None:
    """The file ``name`` in the folder of ``path`` (for an archive member: the loaded file next
    to it in its archive), or None."""
    if isinstance(path, MemberFile):
        return path.nearby.get((path.parent / name).as_posix())
    other = path.parent / name
    return other if other.is_file() else None


def siblings(path: Source, pattern: str) -> list[Source]:
    """The files matching ``pattern`` (``*.xml``) in the folder of ``path``, sorted."""
    if isinstance(path, MemberFile):
        found = [
            f
            for f in path.nearby.values()
            if f.parent == path.parent and fnmatchcase(f.name, pattern)
        ]
        return sorted(found)
    return sorted(p for p in path.parent.glob(pattern) if p.is_file())


def library_input(path: Source) -> str | io.BytesIO:
    """What ``obspy.read``, ``obspy.read_inventory`` and ``scipy.io.loadmat`` take: the path
    of a file on disk, or an archive member's bytes as a file object."""
    if isinstance(path, MemberFile):
        return io.BytesIO(read_bytes(path))
    return str(path)


def read_bytes(path: Source, max_bytes: int = MAX_TEXT_BYTES) -> bytes:
    if isinstance(path, MemberFile):
        if path.size == 0:
            raise fail(path, "empty file")
        if path.size > max_bytes:
            raise fail(path, f"file too large ({path.size} bytes)")
        if path.data is None:
            raise fail(path, "archive member not read from its archive")
        return path.data
    try:
        size = path.stat().st_size
        if size == 0:
            raise fail(path, "empty file")
        if size > max_bytes:
            raise fail(path, f"file too large ({size} bytes)")
        return path.read_bytes()
    except OSError as exc:
        raise fail(path, f"cannot read file ({exc.strerror or exc})") from exc


def read_text_lines(path: Source) -> list[str]:
    """The file as text lines (latin-1 never fails to decode; binary junk fails later parsing)."""
    data = read_bytes(path)
    if b"\x00" in data[:4096]:
        raise fail(path, "binary content where a text format was expected")
    return data.decode("latin-1").splitlines()


def to_float(path: Path, text: str, what: str) -> float:
    try:
        value = float(text.strip())
    except (ValueError, AttributeError) as exc:
        raise fail(path, f"{what}: not a number ({text!r})") from exc
    if not math.isfinite(value):
        raise fail(path, f"{what}: not finite ({text!r})")
    return value


def optional_float(text: str | None) -> float | None:
    """A header value that may be blank or junk: None instead of an error."""
    if text is None:
        return None
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_sampling_rate(path: Path, fs_hz: float | None) -> float:
    if fs_hz is None or not math.isfinite(fs_hz) or fs_hz <= 0:
        raise fail(path, f"missing or invalid sampling rate ({fs_hz!r})")
    if fs_hz > 100_000:
        raise fail(path, f"implausible sampling rate {fs_hz} Hz")
    return float(fs_hz)


def stack_zne(path: Path, z: np.ndarray, n: np.ndarray, e: np.ndarray) -> np.ndarray:
    """(3, n) float64 from three components, refusing mismatched lengths."""
    lengths = {"Z": len(z), "N": len(n), "E": len(e)}
    if len(set(lengths.values())) != 1:
        raise fail(path, f"components have different lengths {lengths}")
    return np.vstack([z, n, e]).astype(np.float64)


def add_component(path: Path, components: dict[str, object], comp: str, value: object) -> None:
    """``components[comp] = value``, refusing a component that a file group gives twice."""
    if comp in components:
        raise fail(path, f"component {comp} given twice")
    components[comp] = value


def require_zne(path: Path, components: dict[str, object], need: str = "3") -> None:
    """Refuse a file group whose components are not exactly Z, N and E."""
    if set(components) != {"Z", "N", "E"}:
        found = f"{len(components)} component(s) ({''.join(sorted(components))})"
        raise fail(path, f"{found}; need {need}")


def check_waveform(path: Path, waveform_mps2: np.ndarray) -> np.ndarray:
    """Refuse empty, non-finite or absurd (wrong-unit) waveforms; returns float64 (3, n)."""
    wf = np.asarray(waveform_mps2, dtype=np.float64)
    if wf.ndim != 2 or wf.shape[0] != 3:
        raise fail(path, f"waveform shape {wf.shape}, expected (3, n)")
    if wf.shape[1] < MIN_SAMPLES:
        raise fail(path, f"only {wf.shape[1]} samples (truncated?)")
    if not np.all(np.isfinite(wf)):
        raise fail(path, f"{int(np.sum(~np.isfinite(wf)))} NaN/inf samples")
    pga_g = float(np.max(np.abs(wf - np.median(wf, axis=1, keepdims=True)))) / G_MPS2
    if pga_g > MAX_PGA_G:
        raise fail(path, f"PGA {pga_g:.3g} g > {MAX_PGA_G:g} g: wrong units?")
    return wf


def check_record(record: RawRecord) -> RawRecord:
    """Final checks every reader applies before returning a record."""
    path = Path(record.source_files[0]) if record.source_files else Path("<unknown>")
    record.sampling_rate_hz = check_sampling_rate(path, record.sampling_rate_hz)
    record.waveform_mps2 = check_waveform(path, record.waveform_mps2)
    p_s, s_s = record.p_arrival_s, record.s_arrival_s
    for name, t in (("P", p_s), ("S", s_s)):
        if t is not None and not (0 <= t <= record.duration_s):
            raise fail(path, f"{name} arrival {t} s outside the record (0..{record.duration_s} s)")
    if p_s is not None and s_s is not None and p_s >= s_s:
        raise fail(path, f"P arrival {p_s} s is not before S arrival {s_s} s")
    if record.vs30_mps is not None and not (50 <= record.vs30_mps <= 5000):
        raise fail(path, f"implausible Vs30 {record.vs30_mps} m/s")
    if not record.station_code:
        raise fail(path, "no station code")
    return record


def hypocentral_distance_km(
    st_lat: float | None,
    st_lon: float | None,
    ev_lat: float | None,
    ev_lon: float | None,
    ev_depth_km: float | None,
) -> float | None:
    """Straight-line distance from the hypocentre to the station (None if anything is missing)."""
    if None in (st_lat, st_lon, ev_lat, ev_lon):
        return None
    from obspy.geodetics import gps2dist_azimuth

    try:
        epi_m, _, _ = gps2dist_azimuth(ev_lat, ev_lon, st_lat, st_lon)
    except ValueError:
        return None
    return math.hypot(epi_m / 1000.0, ev_depth_km or 0.0)
