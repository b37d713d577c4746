"""``deepvs30 ingest``: real strong-motion archives → the canonical dataset.

Walks files and folders, unpacks ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archives as they come
(NIED ``<event>.knt.tar.gz``, AFAD TADAS ``<event>.zip``; into a temporary folder removed after
each archive, members named ``archive:member``), groups component files into records
(:mod:`deepvs30.readers`; the files of one archive group as they would on disk), reads each
record once, joins Vs30 from station tables where the file has none, takes P/S arrivals
from the source or picks them, and writes the canonical dataset with
:func:`deepvs30.dataset.write_dataset`.
Nothing is dropped silently: every input record (or unreadable file group) ends either in the
dataset or in ``quarantine.csv`` (file, reason) in the output folder, and the summary says so:
``ingested + quarantined == input items``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from deepvs30 import progress
from deepvs30.config import section
from deepvs30.dataset import REQUIRED_COLUMNS, write_dataset
from deepvs30.errors import DatasetFormatError, ReaderError
from deepvs30.readers import (
    FORMATS,
    FileGroup,
    RawRecord,
    adopt_names,
    group_files,
    is_sidecar,
    read_group,
    read_record,
)
from deepvs30.readers.archives import Unpacked, is_archive, unpacked
from deepvs30.readers.base import hypocentral_distance_km
from deepvs30.readers.picking import Picks, given_or_picked
from deepvs30.readers.stations import (
    StationTable,
    load_afad_station_list,
    load_ngaw2_japan,
    load_station_csv,
)

log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.csv"
REASON_UNLABELLED = "no Vs30 label"
SensorChoice = Literal["surface", "borehole", "all"]


@dataclass
class IngestParams:
    """The ``ingest:`` section of params.yaml."""

    afad_station_list: str = ""  # AFAD stations.xlsx ("" = not used)
    ngaw2_flatfile: str = ""  # NGA-West2 flatfile for K-NET/KiK-net codes ("" = not used)
    sensor: SensorChoice = "surface"  # KiK-net: surface (default), borehole or all
    pick: bool = True  # pick P/S with ObsPy where the source gives none
    # Vs30 labels of one station that differ by more than this are conflicting (quarantined);
    # the same default as validate.station_vs30_tolerance_mps (363 vs 364 m/s: one label).
    vs30_tolerance_mps: float = 1.0


@dataclass
class IngestSummary:
    out_dir: Path
    input_files: int = 0  # data files walked, archive members included (sidecars excluded)
    sidecar_files: int = 0  # .metadata/.xml/.rs/... consumed by readers, not records
    archives: int = 0  # archives unpacked (their members are counted in input_files)
    input_items: int = 0  # records read + file groups that failed to read
    ingested: int = 0
    quarantined: int = 0
    quarantine: list[tuple[str, str]] = field(default_factory=list)
    ingested_by_format: Counter = field(default_factory=Counter)
    quarantined_by_reason: Counter = field(default_factory=Counter)
    picks_by_status: Counter = field(default_factory=Counter)

    @property
    def balanced(self) -> bool:
        return self.ingested + self.quarantined == self.input_items

    def text(self) -> str:
        lines = [
            f"input: {self.input_files} data file(s) ({self.sidecar_files} sidecar file(s) used "
            f"as metadata; {self.archives} archive(s) unpacked) -> {self.input_items} "
            "record(s)/unreadable group(s)",
            f"ingested: {self.ingested} "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.ingested_by_format.items())),
            f"quarantined: {self.quarantined} (see {self.out_dir / QUARANTINE_FILE})",
        ]
        lines += [f"  {n:4d}  {reason}" for reason, n in self.quarantined_by_reason.most_common()]
        lines.append(
            "P/S: " + ", ".join(f"{k}={v}" for k, v in sorted(self.picks_by_status.items()))
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
    (``view`` set while its temporary folder exists). Names are as users see them."""

    groups: list[FileGroup]
    rejected: list[tuple[str, str]]  # (file or archive name, reason): not read, one item each
    view: Unpacked | None = None
    n_files: int = 0  # data files (members) in this batch
    n_sidecars: int = 0

    def name(self, path: str | Path) -> str:
        return self.view.name(path) if self.view else str(path)

    def reason(self, text: str) -> str:
        return self.view.rename(text) if self.view else text

    def files(self, group: FileGroup) -> str:
        return ";".join(self.name(p) for p in group.files)

    def read(self, group: FileGroup, siblings: bool = False) -> list[RawRecord]:
        """The group's records, files named ``archive:member`` inside archives; ReaderError.
        ``siblings``: also the other component files next to them (one file given alone)."""
        try:
            records = read_record(group.files[0], group.fmt) if siblings else read_group(group)
        except ReaderError as exc:
            raise ReaderError(self.files(group), self.reason(exc.reason)) from exc
        if self.view is not None:
            for record in records:
                adopt_names(record, self.view)
        return records


def batches(data_files: Sequence[Path], fmt: str = "auto") -> Iterator[Batch]:
    """Plain files first, then each archive unpacked in turn (its folder removed before the
    next one): use each batch before asking for the next."""
    plain = [p for p in data_files if not is_archive(p)]
    groups, rejected = group_files(plain, fmt)
    yield Batch(groups, [(str(p), e.reason) for p, e in rejected], n_files=len(plain))
    for archive in data_files:
        if is_archive(archive):
            yield from _archive_batch(archive, fmt)


def _archive_batch(archive: Path, fmt: str) -> Iterator[Batch]:
    stack = ExitStack()
    try:
        view = stack.enter_context(unpacked(archive))
    except ReaderError as exc:
        yield Batch([], [(str(archive), exc.reason)])
        return
    with stack:
        members = [p for p in view.files if not is_sidecar(p)]
        if not members:
            yield Batch([], [(str(archive), "archive holds no data files")])
            return
        groups, rejected = group_files(members, fmt)
        named = [(view.name(p), view.rename(e.reason)) for p, e in rejected]
        yield Batch(groups, named, view, len(members), len(view.files) - len(members))


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


def picks_for(record: RawRecord, pick: bool = True) -> Picks:
    """P/S of a record: given or picked (``pick``), else the source's own arrivals only."""
    if pick:
        return given_or_picked(record)
    p_s, s_s = record.p_arrival_s, record.s_arrival_s
    return Picks(
        p_s,
        s_s,
        "given" if p_s is not None else "failed",
        "given" if s_s is not None else "failed",
        "" if p_s is not None and s_s is not None else "not picked (pick: false)",
    )


def canonical_pairs(
    records: Iterable[RawRecord], stations: StationTable | None = None, pick: bool = True
) -> list[tuple[dict, np.ndarray]]:
    """Records → canonical ``(metadata, waveform)`` pairs, labels joined (Vs30 may be blank)."""
    pairs = []
    for record in records:
        record = join_station(record, stations)
        pairs.append(to_canonical(record, picks_for(record, pick)))
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
    """Read every record under ``paths`` and write the canonical dataset at ``out_dir``."""
    params = params or IngestParams()
    out_dir = Path(out_dir)
    stations = stations if stations is not None else build_station_table(params, stations_csv)
    summary = IngestSummary(out_dir=out_dir)

    def quarantine(files: str, reason: str) -> None:
        summary.quarantine.append((files, reason))
        summary.quarantined += 1
        summary.quarantined_by_reason[_reason_class(reason)] += 1

    data_files, sidecars, missing = walk(paths)
    summary.sidecar_files = len(sidecars)
    summary.input_items += len(missing)
    for path in missing:
        quarantine(str(path), "no such file or folder")

    accepted: list[tuple[dict, np.ndarray]] = []
    seen: dict[tuple[str, ...], str] = {}
    bar = progress.bar(desc="ingest", unit="rec")
    for batch in batches(data_files, fmt):
        _count_batch(batch, summary)
        for name, reason in batch.rejected:
            quarantine(name, reason)
        for group in batch.groups:
            bar.update(1)
            for record in _read_or_quarantine(group, batch, summary, quarantine):
                summary.input_items += 1
                reason = _screen(record, params, include_unlabelled, seen, stations)
                if reason:
                    quarantine(record.source_file, reason)
                    continue
                seen[_dedupe_key(record)] = record.source_file
                accepted.append(_accept(record, params.pick, summary))
    bar.close()
    accepted = _drop_conflicting_labels(accepted, summary, quarantine, params.vs30_tolerance_mps)
    _make_names_unique(accepted)
    if accepted:
        write_dataset(out_dir, accepted, total=len(accepted))
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
    write_quarantine(out_dir / QUARANTINE_FILE, summary.quarantine)
    if not accepted:
        raise DatasetFormatError(
            f"{out_dir}: no record could be ingested; {summary.quarantined} quarantined "
            f"(see {out_dir / QUARANTINE_FILE})"
        )
    return summary


def _station_key(meta: dict) -> str:
    return f"{meta['station_network_code']}.{meta['station_code']}"


def _drop_conflicting_labels(
    accepted: list[tuple[dict, np.ndarray]],
    summary: IngestSummary,
    quarantine,
    tolerance_mps: float = 0.0,
) -> list[tuple[dict, np.ndarray]]:
    """Vs30 is one value per station: records of a station whose sources disagree by more than
    ``tolerance_mps`` (e.g. the .mat file says 466 m/s, the AFAD station list 1024 m/s) are
    quarantined, not guessed. Labels within the tolerance (363 vs 364 m/s) are kept as given."""
    labels: dict[str, set[float]] = {}
    for meta, _ in accepted:
        vs30 = pd.to_numeric(meta["station_vs30_mps"], errors="coerce")
        if pd.notna(vs30):  # blank labels (--include-unlabelled) do not conflict
            labels.setdefault(_station_key(meta), set()).add(round(float(vs30), 1))
    conflicting = {k: v for k, v in labels.items() if max(v) - min(v) > tolerance_mps + 1e-9}
    kept = []
    for meta, waveform in accepted:
        key = _station_key(meta)
        if key not in conflicting:
            kept.append((meta, waveform))
            continue
        values = ", ".join(f"{v:g}" for v in sorted(conflicting[key]))
        quarantine(
            meta["trace_source_file"],
            f"station {key} has conflicting Vs30 labels ({values} m/s); "
            "give the right one with --stations",
        )
        _uncount(meta, summary)
    return kept


def _uncount(meta: dict, summary: IngestSummary) -> None:
    """Take an accepted record back out of the ingested counts."""
    summary.ingested -= 1
    summary.ingested_by_format[meta["trace_source_format"]] -= 1
    summary.picks_by_status[f"P {meta['trace_p_status']}"] -= 1
    summary.picks_by_status[f"S {meta['trace_s_status']}"] -= 1
    for counter in (summary.ingested_by_format, summary.picks_by_status):
        for name in [k for k, n in counter.items() if n <= 0]:
            del counter[name]


def _count_batch(batch: Batch, summary: IngestSummary) -> None:
    summary.input_files += batch.n_files
    summary.sidecar_files += batch.n_sidecars
    summary.archives += batch.view is not None
    summary.input_items += len(batch.rejected)


def _accept(record: RawRecord, pick: bool, summary: IngestSummary) -> tuple[dict, np.ndarray]:
    meta, waveform = to_canonical(record, picks_for(record, pick))
    summary.picks_by_status[f"P {meta['trace_p_status']}"] += 1
    summary.picks_by_status[f"S {meta['trace_s_status']}"] += 1
    summary.ingested += 1
    summary.ingested_by_format[record.source_format] += 1
    return meta, waveform


def _read_or_quarantine(
    group: FileGroup, batch: Batch, summary: IngestSummary, quarantine
) -> list[RawRecord]:
    try:
        return batch.read(group)
    except ReaderError as exc:
        summary.input_items += 1
        quarantine(exc.path, exc.reason)
        return []


def _screen(
    record: RawRecord,
    params: IngestParams,
    include_unlabelled: bool,
    seen: dict[tuple[str, ...], str],
    stations: StationTable,
) -> str:
    """Why a record must be quarantined ("" = keep). Joins the station table on the way."""
    if not _sensor_ok(record, params.sensor):
        return f"{record.sensor} sensor not ingested (sensor: {params.sensor})"
    join_station(record, stations)
    if record.vs30_mps is None and not include_unlabelled:
        return REASON_UNLABELLED
    key = _dedupe_key(record)
    if key in seen:
        return f"duplicate of {seen[key]} (same station and start time)"
    return ""


def _reason_class(reason: str) -> str:
    """Reasons grouped for the summary (numbers and paths stripped)."""
    reason = re.sub(r"duplicate of .*", "duplicate", reason)
    reason = re.sub(r"\(.*?\)", "", reason)
    reason = re.sub(r"(?<![\w.])[-+]?\d[\d.]*(?:[eE][-+]?\d+)?", "#", reason)
    return re.sub(r"\s+", " ", reason).strip(" :;")


def _make_names_unique(pairs: list[tuple[dict, np.ndarray]]) -> None:
    counts: Counter = Counter()
    for meta, _ in pairs:
        name = meta["trace_name"]
        counts[name] += 1
        if counts[name] > 1:
            meta["trace_name"] = f"{name}.{counts[name]}"


def write_quarantine(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "reason"])
        writer.writerows(rows)


def read_quarantine(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


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
