"""``deepvs30 ingest``: real strong-motion archives → the canonical dataset.

Walks files and folders, groups component files into records (:mod:`deepvs30.readers`), reads
each record once, joins Vs30 from station tables where the file has none, takes P/S arrivals
from the source or picks them, and writes the canonical dataset with
:func:`deepvs30.dataset.write_dataset`. Archives (``.tar.gz``/``.tgz``/``.tar``/``.zip``: NIED
``<event>.knt.tar.gz``, AFAD TADAS ``<event>.zip``) are read in place, never unpacked to disk:
members are listed once, grouped as they would be on disk, and each file group's bytes read
into memory while it is read (:mod:`deepvs30.readers.archives`); members are named
``archive:member``.

Records flow reader → checks → disk in **shards**: the file groups of one source (the plain
files, or one archive) cut into slices of ``ingest.shard_records``. Each shard is read, screened
and canonicalised (picking included) by one process, its waveforms (float32, as the dataset
stores them) streamed record by record into ``<id>.h5`` and its rows (metadata, quarantine,
dedupe keys, counts) into ``<id>.json``, written last and atomically: a shard is finished iff
its manifest exists. Shards live in the work folder ``<out>.partial/`` beside the output.
``ingest.workers`` processes read shards side by side (1: in this process; ``auto``: the usable
cores, :mod:`deepvs30.threads`); an archive is opened and read by one worker, its shards in
turn, while other workers read other archives or slices of the plain files. Then the steps that
need every record, in input order: duplicates (same station, sensor and start time), stations
with conflicting Vs30 labels, unique trace names. Their per-record state (the first record of
each dedupe key, the uses of each trace name) is an SQLite index in the work folder, and the
quarantine rows are appended to a file there as they come; what memory holds across records is
per station (Vs30 labels). A first pass over the shards' manifests finds duplicates and
labels, a second writes the dataset from the shards one record at a time; then the work folder
is removed. No process holds more than one file group's waveforms (and, inside an archive, its
member bytes) of its own, nor more than one shard's manifest; the writer holds at most one
bucket (256 records) per record length class, its metadata spooled to disk
(:mod:`deepvs30.metadata_spool`): peak memory does not grow with the number of records.

Resume: the work folder records a fingerprint of the inputs (paths, sizes, modification times),
of the station tables, of the parameters that change the output and of the code. A rerun (after
a crash or ``kill -9``) with the same fingerprint reuses the finished shards and discards
unfinished ones; the dataset is the same as an uninterrupted run's, whatever the worker count.
A different fingerprint starts clean, and says so in the log.

Nothing is dropped silently: every input record (or unreadable file group) ends either in the
dataset or in ``quarantine.csv`` (file, reason) in the output folder, and the summary says so:
``ingested + quarantined == input items``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack, closing, contextmanager
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

import deepvs30
from deepvs30 import progress, threads
from deepvs30.config import section
from deepvs30.dataset import REQUIRED_COLUMNS, WRITE_CACHE_MB, process_alive, write_dataset
from deepvs30.errors import ConfigError, DatasetFormatError, ReaderError
from deepvs30.file_spool import ARCHIVE, DATA, LISTING_FILE, SIDECAR, FileListing, slices
from deepvs30.readers import (
    FORMATS,
    FileGroup,
    RawRecord,
    group_archive,
    group_files,
    is_sidecar,
    read_group,
    read_record,
)
from deepvs30.readers.archives import Archive, is_archive, opened
from deepvs30.readers.base import hypocentral_distance_km
from deepvs30.readers.picking import PickParams, Picks, given_or_picked
from deepvs30.readers.stations import (
    StationTable,
    load_afad_station_list,
    load_ngaw2_japan,
    load_station_csv,
)
from deepvs30.scratch_db import scratch_db

log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.csv"
REASON_UNLABELLED = "no Vs30 label"
PARTIAL_SUFFIX = ".partial"  # the work folder <out>.partial beside the output
FINGERPRINT_FILE = "fingerprint.json"
MERGE_INDEX_FILE = "merge.sqlite"  # in the work folder: the merge's per-record state
WORK_FORMAT = 1  # layout of the work folder; a change makes old work folders start clean
SensorChoice = Literal["surface", "borehole", "all"]
Workers = int | Literal["auto"]
# What a reading process imports (the readers import some lazily), imported once by the fork
# server that starts the workers.
WORKER_PRELOAD = (
    "deepvs30.ingest",
    "h5py",
    "scipy.io",
    "obspy",
    "obspy.signal.filter",
    "obspy.signal.trigger",
    "obspy.signal.rotate",
    "obspy.taup",
    "obspy.geodetics",
)


@dataclass
class IngestParams:
    """The ``ingest:`` section of params.yaml."""

    afad_station_list: str = ""  # AFAD stations.xlsx ("" = not used)
    ngaw2_flatfile: str = ""  # NGA-West2 flatfile for K-NET/KiK-net codes ("" = not used)
    sensor: SensorChoice = "surface"  # KiK-net: surface (default), borehole or all
    pick: bool = True  # pick P/S with ObsPy where the source gives none
    picking: PickParams = field(default_factory=PickParams)  # the picker's settings
    # Vs30 labels of one station that differ by more than this are conflicting (quarantined);
    # the same default as validate.station_vs30_tolerance_mps (363 vs 364 m/s: one label).
    vs30_tolerance_mps: float = 1.0
    # File groups per shard: the unit of parallel reading and of resume (not of memory: records
    # go to disk one by one). Changing it makes a rerun start clean; the output is the same.
    shard_records: int = 256
    workers: Workers = 1  # reading processes: 1 = this process, auto = the usable cores
    # Waveform MB the dataset writer holds before writing a bucket early (dataset.write_dataset)
    write_cache_mb: float = WRITE_CACHE_MB


@dataclass
class IngestSummary:
    out_dir: Path
    input_files: int = 0  # data files walked, archive members included (sidecars excluded)
    sidecar_files: int = 0  # .metadata/.xml/.rs/... consumed by readers, not records
    archives: int = 0  # archives read (their members are counted in input_files)
    input_items: int = 0  # records read + file groups that failed to read
    ingested: int = 0
    quarantined: int = 0  # rows of quarantine.csv (written as they come, not held)
    ingested_by_format: Counter = field(default_factory=Counter)
    quarantined_by_reason: Counter = field(default_factory=Counter)
    picks_by_status: Counter = field(default_factory=Counter)
    shards: int = 0  # shards of this run
    shards_reused: int = 0  # of them, finished by an earlier, interrupted run

    @property
    def balanced(self) -> bool:
        return self.ingested + self.quarantined == self.input_items

    def text(self) -> str:
        lines = [
            f"input: {self.input_files} data file(s) ({self.sidecar_files} sidecar file(s) used "
            f"as metadata; {self.archives} archive(s) read) -> {self.input_items} "
            "record(s)/unreadable group(s)",
            f"ingested: {self.ingested} "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.ingested_by_format.items())),
            f"quarantined: {self.quarantined} (see {self.out_dir / QUARANTINE_FILE})",
        ]
        lines += [f"  {n:4d}  {reason}" for reason, n in self.quarantined_by_reason.most_common()]
        lines.append(
            "P/S: " + ", ".join(f"{k}={v}" for k, v in sorted(self.picks_by_status.items()))
        )
        if self.shards_reused:
            lines.append(
                f"resumed: {self.shards_reused} of {self.shards} shard(s) reused from an "
                "interrupted run"
            )
        lines.append(
            f"check: ingested + quarantined = {self.ingested + self.quarantined} "
            f"{'==' if self.balanced else '!='} {self.input_items} input items"
        )
        return "\n".join(lines)


# ---------------------------------------------------------------- paths


def default_realdata_dir() -> Path:
    """``DEEPVS30_REALDATA``, else ``../shared/realdata`` relative to the repository root."""
    env = os.environ.get("DEEPVS30_REALDATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "realdata"


def walk(paths: Iterable[str | Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(data files, sidecar files, missing paths), files in sorted order, folders recursed."""
    data, sidecars, missing = [], [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            children = sorted(p for p in path.rglob("*") if p.is_file())
            children = [p for p in children if not any(s.startswith(".") for s in p.parts[-3:])]
        elif path.is_file():
            children = [path]
        else:
            missing.append(path)
            continue
        for child in children:
            (sidecars if is_sidecar(child) else data).append(child)
    return sorted(set(data)), sorted(set(sidecars)), missing


@dataclass
class Batch:
    """The file groups of one source: the plain files walked, or the members of one archive
    (``archive`` set, open while the batch is used). Names are as users see them."""

    groups: list[FileGroup]
    rejected: list[tuple[str, str]]  # (file or archive name, reason): not read, one item each
    archive: Archive | None = None
    n_files: int = 0  # data files (members) in this batch
    n_sidecars: int = 0

    def files(self, group: FileGroup) -> str:
        return ";".join(str(p) for p in group.files)

    def read(self, group: FileGroup, siblings: bool = False) -> list[RawRecord]:
        """The group's records, files named ``archive:member`` inside archives (their bytes read
        from the archive now); ReaderError. ``siblings``: also the other component files next
        to them on disk (one file given alone; an archive's groups are complete)."""
        try:
            if siblings and self.archive is None:
                records = read_record(group.files[0], group.fmt)
            else:
                records = read_group(group, self.archive)
        except ReaderError as exc:
            raise ReaderError(self.files(group), exc.reason) from exc
        return records


def batches(data_files: Sequence[Path], fmt: str = "auto") -> Iterator[Batch]:
    """Plain files first, then each archive in turn (closed before the next one is opened):
    use each batch before asking for the next."""
    yield plain_batch(data_files, fmt)
    for archive in data_files:
        if is_archive(archive):
            with archive_batch(archive, fmt) as batch:
                yield batch


def plain_batch(data_files: Sequence[Path], fmt: str = "auto") -> Batch:
    """The files of ``data_files`` that are not archives, grouped into records."""
    plain = [p for p in data_files if not is_archive(p)]
    groups, rejected = group_files(plain, fmt)
    return Batch(groups, [(str(p), e.reason) for p, e in rejected], n_files=len(plain))


@contextmanager
def archive_batch(archive: Path, fmt: str = "auto") -> Iterator[Batch]:
    """The members of ``archive`` grouped into records, the archive open for as long as the
    block lasts (each group's bytes are read when the group is read; nothing goes to disk);
    an archive that cannot be read, or holds no data file, is one rejected item."""
    with ExitStack() as stack:
        try:
            source = stack.enter_context(opened(archive))
            groups, rejected, n_files, n_sidecars = group_archive(source, fmt)
        except ReaderError as exc:
            yield Batch([], [(str(archive), exc.reason)])
            return
        if not n_files:
            yield Batch([], [(str(archive), "archive holds no data files")])
            return
        named = [(str(p), e.reason) for p, e in rejected]
        yield Batch(groups, named, source, n_files, n_sidecars)


# ---------------------------------------------------------------- stations


def build_station_table(
    params: IngestParams, stations_csv: str | Path | None = None
) -> StationTable:
    """User table first (it wins), then the built-in AFAD list and NGA-West2 (K-NET/KiK-net)."""
    tables = []
    if stations_csv:
        tables.append(load_station_csv(stations_csv))
    if params.afad_station_list:
        tables.append(load_afad_station_list(_expand(params.afad_station_list)))
    if params.ngaw2_flatfile:
        tables.append(load_ngaw2_japan(_expand(params.ngaw2_flatfile)))
    return StationTable(tables)


def _expand(path: str) -> str:
    """Station-table paths may name ${DEEPVS30_REALDATA} (default ../shared/realdata)."""
    os.environ.setdefault("DEEPVS30_REALDATA", str(default_realdata_dir()))
    return os.path.expandvars(path)


def join_station(record: RawRecord, stations: StationTable | None) -> RawRecord:
    """Fill Vs30 (and missing coordinates) from the table when the file carries none."""
    if stations is None:
        return record
    info = stations.lookup(record.station_network, record.station_code)
    if info is None:
        return record
    if record.vs30_mps is None:
        record.vs30_mps = info.vs30_mps
        record.vs30_method = info.vs30_method  # type: ignore[assignment]
        record.extra["vs30_table"] = info.table
    if record.station_latitude_deg is None:
        record.station_latitude_deg = info.lat
        record.station_longitude_deg = info.lon
    return record


# ---------------------------------------------------------------- canonical rows


def _blank(value: Any) -> Any:
    return "" if value is None else value


def _sample(t_s: float | None, fs_hz: float) -> Any:
    return "" if t_s is None else int(round(t_s * fs_hz))


def trace_name(record: RawRecord) -> str:
    when = record.start_time or record.event_origin_time or "notime"
    name = f"{record.station_network}.{record.station_code}.{record.sensor}.{when}"
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


def to_canonical(record: RawRecord, picks: Picks | None = None) -> tuple[dict, np.ndarray]:
    """One RawRecord as a ``(metadata, waveform_mps2)`` pair of the canonical dataset."""
    picks = picks or Picks(None, None, "failed", "failed", "not picked")
    fs_hz = record.sampling_rate_hz
    hyp_km = record.hyp_distance_km
    if hyp_km is None:
        hyp_km = hypocentral_distance_km(
            record.station_latitude_deg,
            record.station_longitude_deg,
            record.event_latitude_deg,
            record.event_longitude_deg,
            record.event_depth_km,
        )
    meta = {
        "trace_name": trace_name(record),
        "station_network_code": record.station_network,
        "station_code": record.station_code,
        "station_latitude_deg": _blank(record.station_latitude_deg),
        "station_longitude_deg": _blank(record.station_longitude_deg),
        "station_vs30_mps": _blank(record.vs30_mps),
        "station_vs30_method": record.vs30_method if record.vs30_mps is not None else "",
        "source_id": _blank(record.event_id),
        "source_magnitude": _blank(record.event_magnitude),
        "source_latitude_deg": _blank(record.event_latitude_deg),
        "source_longitude_deg": _blank(record.event_longitude_deg),
        "source_depth_km": _blank(record.event_depth_km),
        "path_hyp_distance_km": _blank(hyp_km),
        "trace_sampling_rate_hz": fs_hz,
        "trace_p_arrival_sample": _sample(picks.p_arrival_s, fs_hz),
        "trace_s_arrival_sample": _sample(picks.s_arrival_s, fs_hz),
        "trace_start_time": _blank(record.start_time),
        "trace_p_status": picks.p_status,
        "trace_s_status": picks.s_status,
        "trace_pick_note": picks.note,
        "source_magnitude_type": _blank(record.event_magnitude_type),
        "source_origin_time": _blank(record.event_origin_time),
        "trace_sensor": record.sensor,
        "trace_source_file": record.source_file,
        "trace_source_format": record.source_format,
    }
    assert all(c in meta for c in REQUIRED_COLUMNS)
    return meta, record.waveform_mps2


def picks_for(record: RawRecord, pick: bool = True, picking: PickParams | None = None) -> Picks:
    """P/S of a record: given or picked (``pick``, with ``picking``'s settings), else the
    source's own arrivals only."""
    if pick:
        return given_or_picked(record, picking)
    p_s, s_s = record.p_arrival_s, record.s_arrival_s
    return Picks(
        p_s,
        s_s,
        "given" if p_s is not None else "failed",
        "given" if s_s is not None else "failed",
        "" if p_s is not None and s_s is not None else "not picked (pick: false)",
    )


def canonical_pairs(
    records: Iterable[RawRecord],
    stations: StationTable | None = None,
    pick: bool = True,
    picking: PickParams | None = None,
) -> list[tuple[dict, np.ndarray]]:
    """Records → canonical ``(metadata, waveform)`` pairs, labels joined (Vs30 may be blank)."""
    pairs = []
    for record in records:
        record = join_station(record, stations)
        pairs.append(to_canonical(record, picks_for(record, pick, picking)))
    return pairs


def records_for_prediction(
    path: str | Path,
    fmt: str = "auto",
    stations: StationTable | None = None,
    pick: bool = True,
) -> list[tuple[dict, np.ndarray]]:
    """One raw file (plus its sibling components; ``archive:member`` names work) → canonical
    ``(metadata, waveform)`` pairs, the same rows ``ingest`` writes (Vs30 may be blank).
    Raises ReaderError."""
    return canonical_pairs(read_record(path, fmt), stations, pick)


# ---------------------------------------------------------------- ingest


def _dedupe_key(record: RawRecord) -> tuple[str, ...]:
    when = record.start_time or record.event_origin_time or record.source_file
    return (record.station_network, record.station_code, record.sensor, when)


def _sensor_ok(record: RawRecord, sensor: SensorChoice) -> bool:
    return sensor == "all" or record.sensor == sensor


def ingest_paths(
    paths: Sequence[str | Path],
    out_dir: str | Path,
    fmt: str = "auto",
    stations_csv: str | Path | None = None,
    include_unlabelled: bool = False,
    params: IngestParams | None = None,
    stations: StationTable | None = None,
) -> IngestSummary:
    """Read every record under ``paths`` and write the canonical dataset at ``out_dir``, in
    shards under ``<out_dir>.partial`` (reused by a rerun after an interruption)."""
    params = params or IngestParams()
    _check_params(params)
    out_dir = Path(out_dir)
    stations = stations if stations is not None else build_station_table(params, stations_csv)
    summary = IngestSummary(out_dir=out_dir)
    root = partial_dir(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    with closing(FileListing(root / LISTING_FILE)) as listing:
        missing = listing.walk(paths)
        summary.sidecar_files = listing.count(SIDECAR)
        summary.input_items += len(missing)
        files = listing.paths(DATA, ARCHIVE, SIDECAR)
        what = fingerprint(files, missing, fmt, include_unlabelled, params, stations)
        work = WorkFolder.open(root, what)
        with quarantine_file(work.root / QUARANTINE_FILE) as rows:
            quarantine = _quarantiner(summary, rows)
            for path in missing:
                quarantine(str(path), "no such file or folder")
            context = ShardContext(
                work.shards, work.fingerprint, params, include_unlabelled, stations
            )
            shard_ids = read_shards(listing, fmt, work, context, worker_count(params.workers))
            summary.shards = len(shard_ids)
            summary.shards_reused = len(work.reused & set(shard_ids))
            n_written = merge_and_write(work, shard_ids, out_dir, summary, quarantine, params)
    os.replace(work.root / QUARANTINE_FILE, out_dir / QUARANTINE_FILE)
    work.remove()
    if not n_written:
        raise DatasetFormatError(
            f"{out_dir}: no record could be ingested; {summary.quarantined} quarantined "
            f"(see {out_dir / QUARANTINE_FILE})"
        )
    return summary


def _check_params(params: IngestParams) -> None:
    if params.shard_records < 1:
        raise ConfigError(f"ingest.shard_records: {params.shard_records}, expected >= 1")
    if params.workers != "auto" and params.workers < 1:
        raise ConfigError(f"ingest.workers: {params.workers}, expected >= 1 or auto")
    if not params.write_cache_mb > 0:
        raise ConfigError(f"ingest.write_cache_mb: {params.write_cache_mb}, expected > 0 (MB)")


def worker_count(workers: Workers) -> int:
    """Reading processes: ``auto`` = this process's share of the usable cores."""
    if workers == "auto":
        return threads.resolve("auto").intra_op
    return max(1, int(workers))


Quarantine = Callable[[str, str], None]  # (files, reason) of one quarantined item


def _quarantiner(summary: IngestSummary, rows: Any) -> Quarantine:
    """Quarantines an item: one row of ``rows`` (a csv writer), counted in ``summary``."""

    def quarantine(files: str, reason: str) -> None:
        rows.writerow((files, reason))
        summary.quarantined += 1
        summary.quarantined_by_reason[_reason_class(reason)] += 1

    return quarantine


def _station_key(meta: dict) -> str:
    return f"{meta['station_network_code']}.{meta['station_code']}"


@dataclass
class StationLabels:
    """Vs30 is one value per station: the labels of each station over the kept records (blank
    ones, --include-unlabelled, do not conflict) and its number of kept records. Sources that
    disagree by more than the tolerance (e.g. the .mat file says 466 m/s, the AFAD station list
    1024 m/s) make every record of the station quarantined, not guessed; labels within it
    (363 vs 364 m/s) are kept as given."""

    labels: dict[str, set[float]] = field(default_factory=dict)
    records: Counter = field(default_factory=Counter)

    def add(self, meta: dict) -> None:
        station = _station_key(meta)
        self.records[station] += 1
        vs30 = pd.to_numeric(meta["station_vs30_mps"], errors="coerce")
        if pd.notna(vs30):
            self.labels.setdefault(station, set()).add(round(float(vs30), 1))

    def conflicting(self, tolerance_mps: float = 0.0) -> dict[str, set[float]]:
        """The stations whose labels differ by more than ``tolerance_mps``, with their labels."""
        return {k: v for k, v in self.labels.items() if max(v) - min(v) > tolerance_mps + 1e-9}


def _conflict_reason(station: str, labels: set[float]) -> str:
    values = ", ".join(f"{v:g}" for v in sorted(labels))
    return (
        f"station {station} has conflicting Vs30 labels ({values} m/s); "
        "give the right one with --stations"
    )


def _count_accepted(meta: dict, summary: IngestSummary) -> None:
    summary.picks_by_status[f"P {meta['trace_p_status']}"] += 1
    summary.picks_by_status[f"S {meta['trace_s_status']}"] += 1
    summary.ingested += 1
    summary.ingested_by_format[meta["trace_source_format"]] += 1


def _uncount(meta: dict, summary: IngestSummary) -> None:
    """Take an accepted record back out of the ingested counts."""
    summary.ingested -= 1
    summary.ingested_by_format[meta["trace_source_format"]] -= 1
    summary.picks_by_status[f"P {meta['trace_p_status']}"] -= 1
    summary.picks_by_status[f"S {meta['trace_s_status']}"] -= 1
    for counter in (summary.ingested_by_format, summary.picks_by_status):
        for name in [k for k, n in counter.items() if n <= 0]:
            del counter[name]


def _screen(
    record: RawRecord,
    params: IngestParams,
    include_unlabelled: bool,
    stations: StationTable,
) -> str:
    """Why a record must be quarantined ("" = keep). Joins the station table on the way.
    Duplicates are found later, across shards (:func:`_merge_shards`)."""
    if not _sensor_ok(record, params.sensor):
        return f"{record.sensor} sensor not ingested (sensor: {params.sensor})"
    join_station(record, stations)
    if record.vs30_mps is None and not include_unlabelled:
        return REASON_UNLABELLED
    return ""


def _duplicate_reason(first_file: str) -> str:
    return f"duplicate of {first_file} (same station and start time)"


def _reason_class(reason: str) -> str:
    """Reasons grouped for the summary (numbers and paths stripped)."""
    reason = re.sub(r"duplicate of .*", "duplicate", reason)
    reason = re.sub(r"\(.*?\)", "", reason)
    reason = re.sub(r"(?<![\w.])[-+]?\d[\d.]*(?:[eE][-+]?\d+)?", "#", reason)
    return re.sub(r"\s+", " ", reason).strip(" :;")


@contextmanager
def quarantine_file(path: Path) -> Iterator[Any]:
    """A csv writer of quarantine rows (``file``, ``reason``) into ``path``, header written."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "reason"])
        yield writer


def read_quarantine(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ---------------------------------------------------------------- work folder and resume


def partial_dir(out_dir: str | Path) -> Path:
    """The work folder of an ingest into ``out_dir``: ``<out_dir>.partial`` beside it."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + PARTIAL_SUFFIX)


def fingerprint(
    files: Iterable[str | Path],
    missing: Sequence[Path],
    fmt: str,
    include_unlabelled: bool,
    params: IngestParams,
    stations: StationTable,
) -> dict:
    """What the output depends on: every input file (path, size, modification time), the
    station tables' content, the parameters (``workers`` excepted: it changes nothing) and the
    code (a reader fixed since the interrupted run must not leave its old rows behind).
    ``files`` in walk order (sorted as paths), taken one at a time."""
    inputs = hashlib.sha256()
    n_files = 0
    for path in files:
        n_files += 1
        stat = os.stat(path)
        inputs.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    settings = {k: v for k, v in asdict(params).items() if k != "workers"}
    return {
        "work_format": WORK_FORMAT,
        "deepvs30": deepvs30.__version__,
        "code_sha256": _code_digest(),
        "input_files": n_files,
        "inputs_sha256": inputs.hexdigest(),
        "missing": [str(p) for p in missing],
        "format": fmt,
        "include_unlabelled": include_unlabelled,
        "params": settings,
        "stations_sha256": _table_digest(stations),
    }


def _code_digest() -> str:
    package = Path(deepvs30.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _table_digest(stations: StationTable) -> str:
    table = stations.table
    digest = hashlib.sha256(json.dumps([str(c) for c in table.columns]).encode())
    digest.update(pd.util.hash_pandas_object(table.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _digest(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


@dataclass
class WorkFolder:
    """``<out>.partial``: the fingerprint and the shards of one ingest."""

    root: Path
    fingerprint: str
    reused: set[str] = field(default_factory=set)  # finished shards found on opening
    _n_chunks: dict[int, int] = field(default_factory=dict)  # by source, from its first shard

    @property
    def shards(self) -> Path:
        """Named by the fingerprint: a process of an older run can never write into it."""
        return self.root / f"shards-{self.fingerprint[:16]}"

    @classmethod
    def open(cls, root: Path, description: dict) -> WorkFolder:
        """Resume the work folder at ``root`` if its fingerprint matches, else start clean."""
        work = cls(root, _digest(description))
        if root.exists() and work._matches():
            work.reused = work._keep_finished()
            log.info(
                "ingest: resuming from %s: %d finished shard(s) reused", root, len(work.reused)
            )
            return work
        stale = [p for p in root.iterdir() if p.name != LISTING_FILE] if root.exists() else []
        if stale:
            log.warning(
                "ingest: %s is from a run with other inputs or parameters: starting clean", root
            )
            _remove_all(stale)
        work.shards.mkdir(parents=True)
        _write_json_atomic(root / FINGERPRINT_FILE, {**description, "sha256": work.fingerprint})
        return work

    def _matches(self) -> bool:
        try:
            recorded = json.loads((self.root / FINGERPRINT_FILE).read_text())
        except (OSError, ValueError):
            return False
        return recorded.get("sha256") == self.fingerprint and self.shards.is_dir()

    def _keep_finished(self) -> set[str]:
        """Delete what an interrupted run left unfinished; the ids of the finished shards."""
        finished = {
            p.stem for p in self.shards.glob("*.json") if (self.shards / f"{p.stem}.h5").is_file()
        }
        for path in self.shards.iterdir():
            if path.stem not in finished or path.suffix not in (".json", ".h5"):
                path.unlink()
        return finished

    def finished(self, shard_id: str) -> bool:
        return (self.shards / f"{shard_id}.json").is_file()

    def manifest(self, shard_id: str) -> dict:
        return json.loads((self.shards / f"{shard_id}.json").read_text())

    def waveforms(self, shard_id: str) -> Path:
        return self.shards / f"{shard_id}.h5"

    def shard_ids(self, n_sources: int) -> list[str]:
        """The ids of every shard of sources ``0 .. n_sources - 1``, all finished."""
        ids = []
        for source in range(n_sources):
            done = self.finished_source(source)
            if done is None:
                raise DatasetFormatError(f"{self.shards}: source {source} has unfinished shards")
            ids += done
        return ids

    def finished_source(self, source: int) -> list[str] | None:
        """The shard ids of ``source`` if all are finished (its files need not be read)."""
        first = shard_name(source, 0)
        if not self.finished(first):
            return None
        if source not in self._n_chunks:
            self._n_chunks[source] = self.manifest(first)["n_chunks"]
        ids = [shard_name(source, k) for k in range(self._n_chunks[source])]
        return ids if all(self.finished(i) for i in ids) else None

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _remove_all(paths: Iterable[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        json.dump(payload, fh, separators=(",", ":"))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------- shards


def shard_name(source: int, chunk: int) -> str:
    """``<source>-<chunk>``: source 0 is the plain files, 1.. the archives in walk order."""
    return f"{source:06d}-{chunk:06d}"


@dataclass(frozen=True)
class ShardTask:
    """One slice of one source's file groups; chunk 0 also carries the source's rejected
    files and its file counts."""

    source: int
    chunk: int
    n_chunks: int
    groups: tuple[FileGroup, ...]
    rejected: tuple[tuple[str, str], ...]
    archive: Archive | None  # the open archive the groups are read from (None: files on disk)
    counts: dict[str, int]  # input_files, sidecar_files, archives

    @property
    def shard_id(self) -> str:
        return shard_name(self.source, self.chunk)


@dataclass(frozen=True)
class ShardContext:
    """What every shard needs besides its files (handed to each worker process once)."""

    folder: Path
    fingerprint: str
    params: IngestParams
    include_unlabelled: bool
    stations: StationTable


def shard_tasks(source: int, batch: Batch, shard_records: int) -> list[ShardTask]:
    """``batch`` cut into slices of ``shard_records`` file groups (at least one slice)."""
    n_chunks = max(1, math.ceil(len(batch.groups) / shard_records))
    counts = {
        "input_files": batch.n_files,
        "sidecar_files": batch.n_sidecars,
        "archives": int(batch.archive is not None),
    }
    return [
        ShardTask(
            source,
            k,
            n_chunks,
            tuple(batch.groups[k * shard_records : (k + 1) * shard_records]),
            tuple(batch.rejected) if k == 0 else (),
            batch.archive,
            counts if k == 0 else dict.fromkeys(counts, 0),
        )
        for k in range(n_chunks)
    ]


def plain_shard_tasks(listing: FileListing, shard_records: int) -> Iterator[ShardTask]:
    """The classified plain files of ``listing`` in slices of ``shard_records``: first the
    rejected files (quarantined in walk order, as :func:`shard_tasks` puts them first), then
    the file groups; at least one slice. Made one at a time, from disk."""
    n_rejected, n_groups = listing.n_rejected(), listing.n_groups()
    n_chunks = max(1, math.ceil(n_rejected / shard_records) + math.ceil(n_groups / shard_records))
    counts = {"input_files": listing.count(DATA), "sidecar_files": 0, "archives": 0}
    items = chain(
        (((), tuple(rejected)) for rejected in slices(listing.rejected(), shard_records)),
        ((tuple(groups), ()) for groups in slices(listing.groups(), shard_records)),
    )
    chunk = -1
    for chunk, (groups, rejected) in enumerate(items):
        yield ShardTask(0, chunk, n_chunks, groups, rejected, None, _counts(counts, chunk))
    if chunk < 0:
        yield ShardTask(0, 0, 1, (), (), None, counts)


def _counts(counts: dict[str, int], chunk: int) -> dict[str, int]:
    """A source's file counts go with its first shard."""
    return counts if chunk == 0 else dict.fromkeys(counts, 0)


def write_shard(
    task: ShardTask, context: ShardContext, on_group: Callable[[], Any] | None = None
) -> int:
    """Read, screen and canonicalise one shard; waveforms go to ``<id>.h5`` record by record,
    then the manifest ``<id>.json`` (the mark of a finished shard). Returns its file groups."""
    import h5py

    batch = Batch(list(task.groups), list(task.rejected), task.archive)
    items: list[list] = [["q", name, reason] for name, reason in task.rejected]
    rows: list[dict] = []
    input_items = len(task.rejected)
    h5_path = context.folder / f"{task.shard_id}.h5"
    tmp = h5_path.with_name(f"{h5_path.name}.{os.getpid()}.tmp")
    with h5py.File(tmp, "w") as h5:
        for group in task.groups:
            for entry in _shard_entries(batch, group, context):
                input_items += 1
                if entry[0] == "r":
                    meta, waveform = entry[3], entry[4]
                    h5.create_dataset(str(len(rows)), data=np.asarray(waveform, np.float32))
                    rows.append(_tagged_row(meta))
                    entry = entry[:3]
                items.append(entry)
            if on_group is not None:
                on_group()
    _fsync(tmp)
    os.replace(tmp, h5_path)
    manifest = {
        "fingerprint": context.fingerprint,
        "shard": task.shard_id,
        "n_chunks": task.n_chunks,
        "n_groups": len(task.groups),
        "counts": {**task.counts, "input_items": input_items},
        "items": items,
        "rows": rows,
    }
    _write_json_atomic(context.folder / f"{task.shard_id}.json", manifest)
    return len(task.groups)


def _shard_entries(batch: Batch, group: FileGroup, context: ShardContext) -> Iterator[list]:
    """One entry per input item of ``group``: ``["q", file, reason]`` (quarantined) or
    ``["r", dedupe key, file, metadata, waveform]`` (a candidate: duplicates are found later)."""
    try:
        records = batch.read(group)
    except ReaderError as exc:
        yield ["q", str(exc.path), exc.reason]
        return
    params = context.params
    for record in records:
        reason = _screen(record, params, context.include_unlabelled, context.stations)
        if reason:
            yield ["q", record.source_file, reason]
            continue
        meta, waveform = to_canonical(record, picks_for(record, params.pick, params.picking))
        key = [_tag(v) for v in _dedupe_key(record)]
        yield ["r", key, record.source_file, meta, waveform]


def _fsync(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


# Metadata crosses the manifest as JSON; numpy scalars keep their type (a float32 written as a
# Python float would print differently in metadata.csv).
_PLAIN = (str, int, float, bool, type(None))


def _tag(value: Any) -> Any:
    if isinstance(value, np.generic):
        return {"$np": value.dtype.str, "v": value.item()}
    if isinstance(value, _PLAIN):
        return value
    raise DatasetFormatError(f"metadata value {value!r} ({type(value).__name__}) not storable")


def _untag(value: Any) -> Any:
    if isinstance(value, dict):
        return np.dtype(value["$np"]).type(value["v"])
    return value


def _tagged_row(meta: dict) -> dict:
    return {k: _tag(v) for k, v in meta.items()}


def _untagged_row(row: dict) -> dict:
    return {k: _untag(v) for k, v in row.items()}


# ---------------------------------------------------------------- reading shards in parallel


def read_shards(
    listing: FileListing,
    fmt: str,
    work: WorkFolder,
    context: ShardContext,
    n_workers: int = 1,
) -> list[str]:
    """Write every unfinished shard; the ids of all shards, in input order. The plain files are
    classified and grouped in ``listing`` (on disk) and read in slices; each archive is one
    task, opened and read by one worker (archives are read side by side, the slices of one
    archive one after another). Tasks are made as workers take them, a few ahead."""
    bar = progress.bar(desc="ingest", unit="rec")
    if work.finished_source(0) is None:
        listing.classify(fmt)  # before the archives are read: no worker waits for it later
    with _executor(context, n_workers, bar) as pool:
        calls = chain(
            _archive_calls(listing, fmt, work), _plain_calls(listing, work, context.params)
        )
        _run_all(pool, calls, window=2 * n_workers)
        if not bar.disable:  # reading every reused manifest costs time: only for a bar
            bar.update(sum(work.manifest(i)["n_groups"] for i in work.reused))
    bar.close()
    return work.shard_ids(listing.count(ARCHIVE) + 1)


TaskCall = tuple[Callable[[Any], int], Any]  # a task function and its task


def _archive_calls(listing: FileListing, fmt: str, work: WorkFolder) -> Iterator[TaskCall]:
    """The unfinished archives, the largest first, so that none is left alone at the end
    (order of reading only: the shards are merged in input order)."""
    for source, archive in listing.archives_largest_first():
        if work.finished_source(source) is None:
            yield _run_archive, ArchiveTask(source, Path(archive), fmt)


def _plain_calls(
    listing: FileListing, work: WorkFolder, params: IngestParams
) -> Iterator[TaskCall]:
    """The unfinished shards of the plain files (classified already unless all are finished)."""
    if work.finished_source(0) is not None:
        return
    for task in plain_shard_tasks(listing, params.shard_records):
        if not work.finished(task.shard_id):
            yield _run_shard, task


def _run_all(pool: Executor, calls: Iterable[TaskCall], window: int) -> None:
    """Submit ``calls`` with at most ``window`` unfinished at a time (a queued task holds its
    file groups); a worker's error is raised here."""
    pending: set[Future] = set()
    for fn, task in calls:
        if len(pending) >= window:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                future.result()
        pending.add(pool.submit(fn, task))
    for future in wait(pending).done:
        future.result()


@dataclass(frozen=True)
class ArchiveTask:
    """One archive: opened by the worker that reads it, its slices written in turn."""

    source: int
    archive: Path
    fmt: str


def write_archive_shards(
    task: ArchiveTask, context: ShardContext, on_group: Callable[[], Any] | None = None
) -> int:
    """The unfinished shards of one archive, read from it in place. Returns the number of file
    groups read."""
    with archive_batch(task.archive, task.fmt) as batch:
        n_groups = 0
        for shard in shard_tasks(task.source, batch, context.params.shard_records):
            if not (context.folder / f"{shard.shard_id}.json").is_file():
                n_groups += write_shard(shard, context, on_group)
        return n_groups


_WORKER: dict[str, Any] = {}  # this process's ShardContext and progress callback


def _run_shard(task: ShardTask) -> int:
    return write_shard(task, _WORKER["context"], _WORKER.get("on_group"))


def _run_archive(task: ArchiveTask) -> int:
    return write_archive_shards(task, _WORKER["context"], _WORKER.get("on_group"))


class _InProcess(Executor):
    """``workers: 1``: each shard runs at once, in this process, as it is submitted."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@contextmanager
def _executor(context: ShardContext, n_workers: int, bar) -> Iterator[Executor]:
    """Runs the shard and archive tasks: in this process (progress per file group) or in a
    pool of ``n_workers`` processes (progress per task). On an error, queued tasks are
    cancelled."""
    if n_workers <= 1:
        _WORKER.update(context=context, on_group=lambda: bar.update(1))
        try:
            yield _InProcess()
        finally:
            _WORKER.clear()
        return
    pool = ProcessPoolExecutor(
        n_workers,
        mp_context=_worker_context(),
        initializer=_init_worker,
        initargs=(context, os.getpid()),
    )
    counting = _CountingPool(pool, bar)
    try:
        yield counting
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server (a clean process: no threads, no open files) that has
    imported the readers' libraries once, so that a new worker starts at once; spawned where
    there is no fork server (a fork server started earlier keeps its own preload)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(WORKER_PRELOAD))
    return context


class _CountingPool(Executor):
    """A process pool whose finished tasks move the progress bar."""

    def __init__(self, pool: ProcessPoolExecutor, bar):
        self.pool, self.bar = pool, bar

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = self.pool.submit(fn, *args, **kwargs)
        future.add_done_callback(
            lambda f: None if f.cancelled() or f.exception() else self.bar.update(f.result())
        )
        return future


def _init_worker(context: ShardContext, parent_pid: int) -> None:
    _WORKER.update(context=context)
    _exit_with_parent(parent_pid)


def _exit_with_parent(parent_pid: int, period_s: float = 0.5) -> None:
    """A worker whose ingest was killed (``kill -9``) stops too, instead of idling forever;
    what it leaves half-written is discarded by the next run."""
    ppid = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != ppid or not process_alive(parent_pid):
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


# ---------------------------------------------------------------- merging shards


class MergeIndex:
    """What the merge knows of every record, on disk (SQLite, made anew by each merge) so that
    memory does not grow with the number of records: the first record of each dedupe key
    (the one kept) and the uses of each trace name."""

    def __init__(self, path: Path) -> None:
        self.db = scratch_db(
            path,
            "CREATE TABLE first (key TEXT PRIMARY KEY, file TEXT, shard INTEGER, row INTEGER);"
            "CREATE INDEX first_by_row ON first (shard, row);"
            "CREATE TABLE names (name TEXT PRIMARY KEY, uses INTEGER);",
        )

    def first_file(self, key: str, file: str, shard: int, row: int) -> str | None:
        """The file of the first record with ``key``; None if it is this one (now recorded)."""
        found = self.db.execute("SELECT file FROM first WHERE key = ?", (key,)).fetchone()
        if found is None:
            self.db.execute("INSERT INTO first VALUES (?, ?, ?, ?)", (key, file, shard, row))
            return None
        return found[0]

    def kept_rows(self, shard: int) -> list[int]:
        """The rows of shard number ``shard`` that are the first of their key, in order."""
        found = self.db.execute("SELECT row FROM first WHERE shard = ? ORDER BY row", (shard,))
        return [row for (row,) in found]

    def unique_name(self, name: str) -> str:
        """``name`` at its first use, then ``name.2``, ``name.3``, ... (as
        :func:`deepvs30.dataset.make_names_unique`)."""
        (uses,) = self.db.execute(
            "INSERT INTO names VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET uses = uses + 1 "
            "RETURNING uses",
            (name,),
        ).fetchone()
        return name if uses == 1 else f"{name}.{uses}"

    def commit(self) -> None:
        self.db.commit()

    def close(self) -> None:
        self.db.close()


def merge_and_write(
    work: WorkFolder,
    shard_ids: Sequence[str],
    out_dir: Path,
    summary: IngestSummary,
    quarantine: Quarantine,
    params: IngestParams,
) -> int:
    """Merge the shards into the dataset at ``out_dir`` (only the folder if no record is
    kept): a first pass finds duplicates and Vs30 labels, a second writes the kept records.
    Returns the number written."""
    with closing(MergeIndex(work.root / MERGE_INDEX_FILE)) as index:
        labels = _merge_shards(work, shard_ids, summary, quarantine, index)
        conflicting = labels.conflicting(params.vs30_tolerance_mps)
        n_kept = summary.ingested - sum(labels.records[station] for station in conflicting)
        records = _kept_records(work, shard_ids, index, conflicting, summary, quarantine)
        if n_kept:
            write_dataset(out_dir, records, total=n_kept, cache_mb=params.write_cache_mb)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            list(records)  # yields nothing: quarantines the conflicting stations' records
    return n_kept


def _merge_shards(
    work: WorkFolder,
    shard_ids: Sequence[str],
    summary: IngestSummary,
    quarantine: Quarantine,
    index: MergeIndex,
) -> StationLabels:
    """The first pass, over the shards in input order: counts added up, quarantined rows passed
    on, the first record of each (station, sensor, start time) recorded in ``index`` as kept
    and later ones quarantined as duplicates. Returns the kept records' Vs30 labels."""
    labels = StationLabels()
    for shard, shard_id in enumerate(shard_ids):
        manifest = work.manifest(shard_id)
        _add_counts(manifest["counts"], summary)
        rows = manifest["rows"]
        n_rows = 0
        for kind, first, second in manifest["items"]:
            if kind == "q":
                quarantine(first, second)
                continue
            row, n_rows = n_rows, n_rows + 1
            first_file = index.first_file(_key_text(first), second, shard, row)
            if first_file is not None:
                quarantine(second, _duplicate_reason(first_file))
                continue
            meta = _untagged_row(rows[row])
            _count_accepted(meta, summary)
            labels.add(meta)
        index.commit()
    return labels


def _key_text(key: list) -> str:
    """A dedupe key (tagged values) as index text: equal keys, equal text (numbers compare
    by value, as in a tuple)."""
    values = [_untag(v) for v in key]
    numbers = (int, float, np.number, np.bool_)
    return json.dumps([float(v) if isinstance(v, numbers) else v for v in values])


def _kept_records(
    work: WorkFolder,
    shard_ids: Sequence[str],
    index: MergeIndex,
    conflicting: dict[str, set[float]],
    summary: IngestSummary,
    quarantine: Quarantine,
) -> Iterator[tuple[dict, np.ndarray]]:
    """The second pass: ``(metadata, waveform)`` of the kept records, read back from the
    shards one at a time in input order, trace names made unique; the records of stations
    with conflicting labels quarantined instead (and taken out of the counts)."""
    import h5py

    for shard, shard_id in enumerate(shard_ids):
        kept = index.kept_rows(shard)
        if not kept:
            continue
        rows = work.manifest(shard_id)["rows"]
        with h5py.File(work.waveforms(shard_id), "r") as h5:
            for row in kept:
                meta = _untagged_row(rows[row])
                station = _station_key(meta)
                if station in conflicting:
                    quarantine(
                        meta["trace_source_file"], _conflict_reason(station, conflicting[station])
                    )
                    _uncount(meta, summary)
                    continue
                meta["trace_name"] = index.unique_name(meta["trace_name"])
                yield meta, h5[str(row)][()]
        index.commit()


def _add_counts(counts: dict[str, int], summary: IngestSummary) -> None:
    summary.input_files += counts["input_files"]
    summary.sidecar_files += counts["sidecar_files"]
    summary.archives += counts["archives"]
    summary.input_items += counts["input_items"]


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IN", help="record files or folders")
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument(
        "--format", default="auto", choices=["auto", *FORMATS], help="force one reader"
    )
    parser.add_argument(
        "--stations",
        default=None,
        metavar="CSV",
        help="station table: network,station,lat,lon,vs30_mps,vs30_method",
    )
    parser.add_argument(
        "--include-unlabelled",
        action="store_true",
        help="ingest records without Vs30 (station_vs30_mps blank) instead of quarantining them",
    )
    parser.add_argument(
        "--sensor",
        choices=["surface", "borehole", "all"],
        default=None,
        help="KiK-net sensor to ingest (default from params.yaml: surface)",
    )
    parser.add_argument("--no-pick", action="store_true", help="do not pick missing P/S arrivals")


def run(args: argparse.Namespace, params: dict) -> int:
    if any(not str(path).strip() for path in args.inputs):
        # An unset variable ("$DEEPVS30_REALDATA") must not become "." and ingest the cwd.
        raise ConfigError("deepvs30 ingest: an input path is empty (is DEEPVS30_REALDATA set?)")
    ingest_params = section(params, "ingest", IngestParams)
    if args.sensor:
        ingest_params.sensor = args.sensor
    if args.no_pick:
        ingest_params.pick = False
    summary = ingest_paths(
        args.inputs,
        args.out,
        fmt=args.format,
        stations_csv=args.stations,
        include_unlabelled=args.include_unlabelled,
        params=ingest_params,
    )
    print(summary.text())
    return 0 if summary.balanced else 1
