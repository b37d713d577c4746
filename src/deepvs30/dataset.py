"""The canonical dataset: one format for every source (synthetic, AFAD, K-NET/KiK-net, user files).

A dataset is a folder in SeisBench's WaveformDataset layout:

- ``metadata.csv``: one row per 3-component record, columns named ``category_parameter_unit``
  (see :data:`REQUIRED_COLUMNS`);
- ``waveforms.hdf5``: the samples, packed by SeisBench's writer into buckets (never one
  HDF5 dataset per record), with ``data_format`` stating component order ``ZNE``,
  dimension order ``CW`` and unit ``m/s^2``;
- optional side tables (``*.csv``), e.g. ``profiles.csv`` of the synthetic corpus.

Waveforms are acceleration in m/s² (readers convert from gal or counts before writing).
Writing is atomic: the folder is built under a temporary name and renamed at the end, so a
failure leaves nothing half-written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from deepvs30.errors import DatasetFormatError

METADATA_FILE = "metadata.csv"
WAVEFORMS_FILE = "waveforms.hdf5"
METADATA_SPOOL_FILE = ".metadata.sqlite"  # while writing only
COMPONENT_ORDER = "ZNE"
DIMENSION_ORDER = "CW"
WAVEFORM_UNIT = "m/s^2"
# Waveform MB the writer may hold in unwritten buckets (metadata_spool.SpooledWriter): a cap on
# memory whatever the spread of record lengths; the real records' whole set is ~68 MB
WRITE_CACHE_MB = 128.0

VS30_METHODS = ("measured", "proxy", "synthetic", "unknown")

# Columns every canonical dataset carries (blank allowed where stated in the README).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "trace_name",
    "station_network_code",
    "station_code",
    "station_latitude_deg",
    "station_longitude_deg",
    "station_vs30_mps",
    "station_vs30_method",
    "source_id",
    "source_magnitude",
    "source_latitude_deg",
    "source_longitude_deg",
    "source_depth_km",
    "path_hyp_distance_km",
    "trace_sampling_rate_hz",
    "trace_p_arrival_sample",
    "trace_s_arrival_sample",
    "trace_start_time",
)

# Optional columns with a documented meaning; readers fill what they know.
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "trace_p_status",  # given | picked | synthetic | failed
    "trace_s_status",
    "trace_pick_note",  # why picking failed, when it did
    "source_magnitude_type",
    "source_origin_time",
    "station_cluster",  # regional cluster id (synthetic corpus, or assigned at prepare)
    "station_f0_hz",  # fundamental frequency of the site profile (synthetic corpus)
    "trace_sensor",  # surface | borehole (KiK-net)
    "trace_source_file",  # the raw file a record came from
    "trace_source_format",
)

_LOCATION = re.compile(r"^(?P<bucket>[^$]+)\$(?P<index>\d+),:(?P<channels>\d+),:(?P<samples>\d+)$")

log = logging.getLogger(__name__)


def finite_or_none(value: object) -> float | None:
    """A metadata cell as a finite float, or None (blank, NaN, inf or text): the one parser
    of optional numbers (arrivals, magnitude, distance) for every reader of the metadata."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def arrival_sample_or_none(value: object) -> float | None:
    """A ``trace_*_arrival_sample`` cell as a sample index, or None where unknown (blank,
    NaN, or negative: an arrival before the record start is not an arrival in it)."""
    sample = finite_or_none(value)
    return sample if sample is not None and sample >= 0 else None


def station_key(metadata: pd.DataFrame) -> pd.Series:
    """Station identity "NET.STA": the unit of every split (Vs30 is a property of the station)."""
    net = metadata["station_network_code"].astype(str)
    return net + "." + metadata["station_code"].astype(str)


def record_ids(metadata: pd.DataFrame) -> pd.Series:
    """The stable record name given by the writer of the dataset (SeisBench keeps it aside
    as ``trace_name_original`` once it packs records into buckets)."""
    if "trace_name_original" in metadata:
        return metadata["trace_name_original"].fillna(metadata["trace_name"]).astype(str)
    return metadata["trace_name"].astype(str)


def make_names_unique(pairs: Iterable[tuple[dict, object]]) -> None:
    """Trace names are record keys (of a dataset, of predict's output): a repeated name
    becomes ``name.2``, ``name.3``, ... in order of appearance (in place)."""
    seen: dict[str, int] = {}
    for meta, _ in pairs:
        name = meta["trace_name"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            meta["trace_name"] = f"{name}.{seen[name]}"


def write_dataset(
    out_dir: str | Path,
    records: Iterable[tuple[dict, np.ndarray]],
    side_tables: dict[str, pd.DataFrame] | None = None,
    total: int | None = None,
    bucket_size: int = 256,
    cache_mb: float | None = WRITE_CACHE_MB,
) -> Path:
    """Write ``(metadata, waveform_mps2)`` pairs as a canonical dataset at ``out_dir``.

    ``waveform_mps2`` has shape (3, n_samples), components in ZNE order, in m/s².
    The folder is replaced atomically; a failure leaves ``out_dir`` as it was. Memory does not
    grow with the number of records: the writer holds at most ``cache_mb`` of waveforms in
    unwritten buckets (None: SeisBench's bucket per record length class, unbounded in
    bytes), and the metadata is spooled to disk (:mod:`deepvs30.metadata_spool`).
    """
    from deepvs30.metadata_spool import SpooledWriter  # imports SeisBench: only where needed

    out_dir = Path(out_dir)
    tmp_dir = staging_dir(out_dir)  # and those of killed writers removed
    n_written = 0
    paths = (tmp_dir / METADATA_FILE, tmp_dir / WAVEFORMS_FILE, tmp_dir / METADATA_SPOOL_FILE)
    try:
        cache_bytes = None if cache_mb is None else int(cache_mb * 2**20)
        with SpooledWriter(*paths, cache_bytes=cache_bytes) as writer:
            writer.data_format = {
                "component_order": COMPONENT_ORDER,
                "dimension_order": DIMENSION_ORDER,
                "measurement": "acceleration",
                "unit": WAVEFORM_UNIT,
                "instrument_response": "restituted",
            }
            writer.bucket_size = bucket_size
            if total is not None:
                writer.set_total(total)
            for metadata, waveform in records:
                _check_record(metadata, waveform)
                writer.add_trace(dict(metadata), np.asarray(waveform, dtype=np.float32))
                n_written += 1
        if n_written == 0:
            raise DatasetFormatError(f"{out_dir}: no records to write")
        for name, table in (side_tables or {}).items():
            table.to_csv(tmp_dir / f"{name}.csv", index=False)
        replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir


def _check_record(metadata: dict, waveform: np.ndarray) -> None:
    name = metadata.get("trace_name", "<unnamed>")
    missing = [c for c in REQUIRED_COLUMNS if c not in metadata]
    if missing:
        raise DatasetFormatError(f"record {name}: missing metadata {missing}")
    shape = np.shape(waveform)
    if len(shape) != 2 or shape[0] != 3:
        raise DatasetFormatError(f"record {name}: waveform shape {shape}, expected (3, n) ZNE")


STAGING = ".tmp-"  # <parent>/.<name>.tmp-<pid>@<host>-<random>: an output being built


def staging_dir(out_dir: Path) -> Path:
    """A new private temporary folder beside ``out_dir`` (same file system, so the finished
    output is renamed into place), named after its process. Those of ``out_dir`` left by
    killed processes on this host are removed first: a SIGKILL runs no clean-up."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    owner = f"{process_owner()}-"
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{STAGING}{owner}", dir=out_dir.parent))


def remove_stale_staging(out_dir: Path) -> list[Path]:
    """Remove the temporary folders of ``out_dir`` whose process, on this host, is gone, and
    the previous copy :func:`replace_dir` keeps for a moment once ``out_dir`` exists again
    (another host's folders are left alone). Returns those removed."""
    removed = []
    prefix = f".{out_dir.name}{STAGING}"
    for holder in out_dir.parent.glob(f"{prefix}*"):
        if not owner_gone(holder.name[len(prefix) :].rpartition("-")[0]):
            continue
        shutil.rmtree(holder, ignore_errors=True)
        removed.append(holder)
    if out_dir.exists():
        for old in out_dir.parent.glob(f".{out_dir.name}.old-*"):
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    return removed


def process_owner() -> str:
    """``pid@host`` of this process: who owns a staging folder or an MLflow run."""
    return f"{os.getpid()}@{socket.gethostname()}"


def owner_gone(owner: str) -> bool:
    """Whether the ``pid@host`` owner is a process of this host that no longer exists
    (another host's, or an unparsable owner, is never taken as gone)."""
    pid, _, host = owner.partition("@")
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def replace_dir(src: Path, dst: Path) -> None:
    src.chmod(0o755)  # mkdtemp makes it private; a dataset folder is shared like any other
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{src.name[-8:]}")
        dst.rename(old)
        src.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        src.rename(dst)


@dataclass(frozen=True)
class TraceLocation:
    bucket: str
    index: int
    n_channels: int
    n_samples: int


def parse_location(trace_name: str) -> TraceLocation | None:
    """Where SeisBench packed a record: ``bucket3$12,:3,:6000`` → bucket, row, sizes."""
    match = _LOCATION.match(trace_name)
    if match is None:
        return None
    return TraceLocation(
        match["bucket"], int(match["index"]), int(match["channels"]), int(match["samples"])
    )


class CanonicalDataset:
    """Read access to a canonical dataset folder: metadata table and waveforms in m/s²."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / METADATA_FILE
        wave_path = self.path / WAVEFORMS_FILE
        if not self.path.is_dir():
            raise DatasetFormatError(f"{self.path}: dataset folder not found")
        for required in (meta_path, wave_path):
            if not required.is_file():
                raise DatasetFormatError(
                    f"{required}: missing; a canonical dataset holds {METADATA_FILE} and "
                    f"{WAVEFORMS_FILE} (run `deepvs30 ingest` or `deepvs30 synth`)"
                )
        try:
            self.metadata = pd.read_csv(meta_path, low_memory=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DatasetFormatError(f"{meta_path}: unreadable CSV ({exc})") from exc
        missing = [c for c in REQUIRED_COLUMNS if c not in self.metadata.columns]
        if missing:
            raise DatasetFormatError(f"{meta_path}: missing columns {missing}")
        self._h5: h5py.File | None = None
        self._check_data_format(wave_path)

    def _check_data_format(self, wave_path: Path) -> None:
        try:
            with h5py.File(wave_path, "r") as h5:
                fmt = h5.get("data_format")
                order = fmt["component_order"][()] if fmt and "component_order" in fmt else None
        except OSError as exc:
            raise DatasetFormatError(f"{wave_path}: not a readable HDF5 file ({exc})") from exc
        if isinstance(order, bytes):
            order = order.decode()
        if order != COMPONENT_ORDER:
            raise DatasetFormatError(
                f"{wave_path}: component_order {order!r}, expected {COMPONENT_ORDER!r}"
            )

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def h5(self) -> h5py.File:
        if self._h5 is None:
            self._h5 = h5py.File(self.path / WAVEFORMS_FILE, "r")
        return self._h5

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __enter__(self) -> CanonicalDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def waveform(self, i: int) -> np.ndarray:
        """Record ``i`` (row of metadata) as float64 array (3, n_samples), ZNE, m/s²."""
        name = str(self.metadata["trace_name"].iat[i])
        loc = parse_location(name)
        data = self.h5["data"]
        if loc is None:  # a single-record bucket is stored under its own name
            return np.asarray(data[name], dtype=np.float64)
        return np.asarray(
            data[loc.bucket][loc.index, : loc.n_channels, : loc.n_samples], dtype=np.float64
        )

    def iter_waveforms(self, rows: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(row, waveform_mps2)``, reading bucket by bucket to keep I/O sequential."""
        rows = range(len(self)) if rows is None else rows
        for i in rows:
            yield i, self.waveform(i)

    def side_table(self, name: str) -> pd.DataFrame | None:
        path = self.path / f"{name}.csv"
        return pd.read_csv(path) if path.is_file() else None
