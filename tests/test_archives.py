"""Archives as users receive them (NIED .tar.gz/.tgz, TADAS .zip), on small archives the tests
build from synthetic K-NET/KiK-net, NSMN and TADAS files: member names, grouping, nothing
written to disk, corrupt archives and members quarantined, sidecars found inside archives, and
the same reading in ``predict``."""

from __future__ import annotations

import io
import tarfile
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.errors import ReaderError
from deepvs30.ingest import (
    QUARANTINE_FILE,
    IngestParams,
    default_realdata_dir,
    ingest_paths,
    read_quarantine,
)
from deepvs30.predict import read_inputs
from deepvs30.readers import group_archive, read_group, read_record
from deepvs30.readers.archives import list_members, opened, split_member
from deepvs30.readers.stations import StationTable, load_station_csv
from test_readers_synthetic import (
    _knet_file,
    quake,
    write_datools_mseed,
    write_nsmn,
    write_tadas_record,
)

NO_PICK = IngestParams(pick=False)
REALDATA = default_realdata_dir()
LAQUILA = REALDATA / "gmpe_smtk_laquila" / "16840"
CCM = REALDATA / "gmprocess_testdata" / "fdsn" / "ci38457511"
needs_realdata = pytest.mark.skipif(
    not (REALDATA / "INDEX.csv").is_file(), reason=f"real records not found at {REALDATA}"
)
KNET_DIRS = {"NS": "N-S", "EW": "E-W", "UD": "U-D"}
KIK_DIRS = {"NS1": "1", "EW1": "2", "UD1": "3", "NS2": "4", "EW2": "5", "UD2": "6"}
STATIONS = """network,station,lat,lon,vs30_mps,vs30_method
BO,TST001,36.1,140.1,312.5,unknown
TK,9999,38.1,27.1,412.5,measured
TK,0120,36.77,35.79,439.0,unknown
"""


def write_knet_files(folder: Path, stem: str, dirs: dict[str, str], seed: int = 0) -> list[Path]:
    """One K-NET/KiK-net component file per suffix of ``dirs`` (suffix -> Dir. header)."""
    rng = np.random.default_rng(seed)
    paths = []
    for suffix, direction in dirs.items():
        path = folder / f"{stem}.{suffix}"
        _knet_file(path, direction, rng.integers(-900, 900, 1600))
        paths.append(path)
    return paths


def pack(archive: Path, files: list[Path], root: Path) -> Path:
    """``files`` packed with names relative to ``root``: tar.gz/.tgz/.tar or zip by suffix."""
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, f.relative_to(root).as_posix())
    else:
        mode = "w" if archive.name.endswith(".tar") else "w:gz"
        with tarfile.open(archive, mode) as tf:
            for f in files:
                tf.add(f, f.relative_to(root).as_posix())
    return archive


@pytest.fixture
def stations(tmp_path: Path) -> Path:
    path = tmp_path / "stations.csv"
    path.write_text(STATIONS)
    return path


@pytest.fixture
def temp_dirs(monkeypatch, tmp_path: Path) -> list[Path]:
    """Every folder made in the temp dir while the test runs (none may be: archives are read
    in place), the temp dir pointed at an empty folder that must stay empty."""
    made: list[Path] = []
    real = tempfile.mkdtemp

    def recording(*args, **kwargs):
        path = Path(real(*args, **kwargs))
        if path.parent == empty:
            made.append(path)
        return str(path)

    empty = tmp_path / "tmpdir"
    empty.mkdir()
    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    monkeypatch.setattr(tempfile, "tempdir", str(empty))
    monkeypatch.setenv("TMPDIR", str(empty))
    yield made
    assert not list(empty.iterdir()), "something was written to the temp dir"


@pytest.mark.parametrize("name", ["20200102120000.knt.tar.gz", "20200102120000.knt.tgz", "x.zip"])
def test_ingest_reads_archive_members_named_archive_colon_member(
    tmp_path: Path, stations: Path, temp_dirs: list[Path], name: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = write_knet_files(src, "TST0012001021200", KNET_DIRS)
    files.append(write_nsmn(src / "20200102030405_9999.txt", quake(seed=1), station="9999"))
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = pack(raw / name, files, src)
    out = tmp_path / "ds"
    summary = ingest_paths([raw], out, stations_csv=stations, params=NO_PICK)
    assert (summary.input_files, summary.archives, summary.input_items) == (4, 1, 2)
    assert (summary.ingested, summary.quarantined) == (2, 0) and summary.balanced
    metadata = pd.read_csv(out / "metadata.csv", dtype={"station_code": str})
    by_station = dict(zip(metadata["station_code"], metadata["trace_source_file"], strict=True))
    assert set(by_station["TST001"].split(";")) == {
        f"{archive}:TST0012001021200.{c}" for c in ("NS", "EW", "UD")
    }
    assert by_station["9999"] == f"{archive}:20200102030405_9999.txt"
    vs30 = dict(zip(metadata["station_code"], metadata["station_vs30_mps"], strict=True))
    assert vs30 == {"TST001": 312.5, "9999": 412.5}
    assert temp_dirs == []


def test_member_in_a_subfolder_keeps_its_path(tmp_path: Path, stations: Path) -> None:
    src = tmp_path / "src"
    (src / "event" / "knt").mkdir(parents=True)
    files = write_knet_files(src / "event" / "knt", "TST0012001021200", KNET_DIRS)
    archive = pack(tmp_path / "a.zip", files, src)
    assert sorted(list_members(archive)) == [
        f"event/knt/TST0012001021200.{c}" for c in ("EW", "NS", "UD")
    ]
    (record,) = read_record(f"{archive}:event/knt/TST0012001021200.EW")
    assert record.source_files == tuple(
        f"{archive}:event/knt/TST0012001021200.{c}" for c in ("UD", "NS", "EW")
    )


def test_kiknet_archive_keeps_the_sensor_rule(tmp_path: Path, stations: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = write_knet_files(src, "TSTH012001021200", KIK_DIRS)
    table = load_station_csv(stations)
    table.loc[len(table)] = ["BO", "TSTH01", 36.1, 140.1, 250.0, "unknown", "t"]
    archive = pack(tmp_path / "20200102120000.kik.tar.gz", files, src)
    out = tmp_path / "ds"
    summary = ingest_paths([archive], out, params=NO_PICK, stations=_table(table))
    assert (summary.ingested, summary.quarantined) == (1, 1)
    (reason,) = read_quarantine(out / QUARANTINE_FILE)["reason"]
    assert reason.startswith("borehole sensor not ingested")
    metadata = pd.read_csv(out / "metadata.csv")
    assert metadata["trace_source_file"].str.endswith("2").all()
    assert metadata["trace_source_format"].tolist() == ["kiknet"]
    both = ingest_paths(
        [archive], tmp_path / "all", params=IngestParams(pick=False, sensor="all"),
        stations=_table(table),
    )  # fmt: skip
    assert both.ingested == 2


def _table(frame: pd.DataFrame) -> StationTable:
    frame = frame.copy()
    frame["station"] = frame["station"].astype(str)
    return StationTable([frame])


def test_tadas_zip_is_ingested_with_header_labels(tmp_path: Path, stations: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    paths = write_tadas_record(src, station="0120", vs30="439")
    paths |= {f"x{c}": p for c, p in write_tadas_record(src, station="0131", vs30="None").items()}
    archive = pack(tmp_path / "20230206011732.zip", list(paths.values()), src)
    out = tmp_path / "ds"
    summary = ingest_paths([archive], out, stations_csv=stations, params=NO_PICK)
    assert (summary.ingested, summary.quarantined, summary.input_items) == (1, 1, 2)
    quarantine = read_quarantine(out / QUARANTINE_FILE)
    assert quarantine["reason"].tolist() == ["no Vs30 label"]
    assert quarantine["file"].str.startswith(f"{archive}:20230206011732_0131_ap_AAD_Acc_").all()
    metadata = pd.read_csv(out / "metadata.csv", dtype={"station_code": str})
    assert metadata[["station_code", "station_vs30_mps", "source_id"]].values.tolist() == [
        ["0120", 439.0, 13194]
    ]


def _truncated(archive: Path) -> Path:
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    return archive


@pytest.mark.parametrize("name", ["20200102120000.knt.tar.gz", "x.zip"])
def test_corrupt_archive_is_quarantined_naming_it(
    tmp_path: Path, stations: Path, temp_dirs: list[Path], name: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = write_knet_files(src, "TST0012001021200", KNET_DIRS)
    raw = tmp_path / "raw"
    raw.mkdir()
    bad = _truncated(pack(raw / name, files, src))
    (raw / "junk.tgz").write_bytes(b"not a gzip stream at all")
    write_nsmn(raw / "20200102030405_9999.txt", quake(seed=1), station="9999")
    out = tmp_path / "ds"
    summary = ingest_paths([raw], out, stations_csv=stations, params=NO_PICK)
    assert (summary.ingested, summary.quarantined, summary.input_items) == (1, 2, 3)
    assert summary.balanced
    reasons = dict(read_quarantine(out / QUARANTINE_FILE).values)
    assert set(reasons) == {str(bad), str(raw / "junk.tgz")}
    assert all(r.startswith("corrupt or truncated archive") for r in reasons.values())
    assert temp_dirs == []


def test_unsafe_and_empty_archives_are_refused(tmp_path: Path, stations: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tf:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"data"))
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("README.md", "only a sidecar")
    write_nsmn(tmp_path / "20200102030405_9999.txt", quake(seed=1), station="9999")
    out = tmp_path / "ds"
    summary = ingest_paths([tmp_path], out, stations_csv=stations, params=NO_PICK)
    reasons = dict(read_quarantine(out / QUARANTINE_FILE).values)
    assert "unsafe member path '../outside.txt'" in reasons[str(evil)]
    assert reasons[str(empty)] == "archive holds no data files"
    assert summary.ingested == 1 and summary.balanced
    assert not (tmp_path.parent / "outside.txt").exists()


@pytest.mark.parametrize("name", ["a.tgz", "a.tar", "a.zip"])
def test_members_are_read_in_memory_one_group_at_a_time(
    tmp_path: Path, temp_dirs: list[Path], name: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = write_knet_files(src, "TST0012001021200", KNET_DIRS)
    files += write_knet_files(src, "TST0022001021200", KNET_DIRS, seed=1)
    archive = pack(tmp_path / name, files, src)
    before = set(tmp_path.rglob("*"))
    with opened(archive) as source:
        groups, rejected, n_files, n_sidecars = group_archive(source)
        assert (len(groups), rejected, n_files, n_sidecars) == (2, [], 6, 0)
        assert all(f.data is None for g in groups for f in g.files)  # listed, not read
        (first, second) = groups
        loaded = source.load(first.files)
        assert [str(f) for f in loaded] == [f"{archive}:{f.member}" for f in first.files]
        assert [len(f.data) for f in loaded] == [f.size for f in first.files]
        (record,) = read_group(first, source)
        assert set(record.source_files) == {f"{archive}:TST0012001021200.{c}" for c in KNET_DIRS}
        (record,) = read_group(second, source)
        assert set(record.source_files) == {f"{archive}:TST0022001021200.{c}" for c in KNET_DIRS}
    assert set(tmp_path.rglob("*")) == before  # nothing unpacked beside it either


def test_corrupt_member_is_quarantined_naming_archive_colon_member(
    tmp_path: Path, stations: Path, temp_dirs: list[Path]
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = write_knet_files(src, "TST0012001021200", KNET_DIRS)
    files.append(write_nsmn(src / "20200102030405_9999.txt", quake(seed=1), station="9999"))
    archive = pack(tmp_path / "x.zip", files, src)
    _flip_member_byte(archive, "TST0012001021200.NS")  # its CRC no longer matches
    out = tmp_path / "ds"
    summary = ingest_paths([archive], out, stations_csv=stations, params=NO_PICK)
    assert (summary.ingested, summary.quarantined, summary.input_items) == (1, 1, 2)
    assert (summary.input_files, summary.archives) == (4, 1) and summary.balanced
    ((file, reason),) = read_quarantine(out / QUARANTINE_FILE).values
    assert set(file.split(";")) == {f"{archive}:TST0012001021200.{c}" for c in ("NS", "EW", "UD")}
    assert reason.startswith("corrupt archive member") and "CRC" in reason
    with pytest.raises(ReaderError, match="corrupt archive member") as info:
        read_record(f"{archive}:TST0012001021200.EW")
    assert info.value.path == f"{archive}:TST0012001021200.NS"


def _flip_member_byte(archive: Path, member: str) -> None:
    """One byte of a stored (uncompressed) copy of ``member`` changed, the CRC kept."""
    with zipfile.ZipFile(archive) as zf:
        items = [(i, zf.read(i)) for i in zf.infolist()]
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for info, data in items:
            zf.writestr(info.filename, data, zipfile.ZIP_STORED)
    raw = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
        at = info.header_offset + 30 + len(info.filename.encode()) + 100
    raw[at] ^= 0xFF
    archive.write_bytes(bytes(raw))


@needs_realdata
def test_sidecars_inside_archives_are_found(tmp_path: Path, temp_dirs: list[Path]) -> None:
    """ITACA ``<id>.metadata`` next to its ``.cor.acc`` files, inside a tar.gz."""
    src = tmp_path / "src" / "16840"
    src.mkdir(parents=True)
    for name in ("16840_H1.cor.acc", "16840_H2.cor.acc", "16840_V.cor.acc", "16840.metadata"):
        (src / name).write_bytes((LAQUILA / name).read_bytes())
    on_disk = read_record(src / "16840_V.cor.acc")[0]
    archive = pack(tmp_path / "itaca.tar.gz", sorted(src.iterdir()), src.parent)
    out = tmp_path / "ds"
    summary = ingest_paths([archive], out, params=NO_PICK)
    assert (summary.input_files, summary.sidecar_files, summary.ingested) == (3, 1, 1)
    (record,) = read_record(f"{archive}:16840/16840_H1.cor.acc")
    assert record.vs30_mps == on_disk.vs30_mps is not None
    assert record.event_id == on_disk.event_id is not None
    np.testing.assert_array_equal(record.waveform_mps2, on_disk.waveform_mps2)
    metadata = pd.read_csv(out / "metadata.csv")
    assert metadata["station_vs30_mps"].tolist() == [on_disk.vs30_mps]


@needs_realdata
def test_stationxml_inside_an_archive_is_found(tmp_path: Path, temp_dirs: list[Path]) -> None:
    """miniSEED channels with their StationXML (units, orientation) next to them in a zip."""
    files = [CCM / f"CI.CLC..HN{c}.mseed" for c in "ZNE"] + [CCM / "CI.CLC.xml"]
    on_disk = read_record(files[0])[0]
    archive = pack(tmp_path / "ccm.zip", files, CCM)
    (record,) = read_record(f"{archive}:CI.CLC..HNN.mseed")
    assert record.orientation_note == on_disk.orientation_note
    assert record.station_latitude_deg == on_disk.station_latitude_deg is not None
    assert record.source_files == tuple(f"{archive}:{p.name}" for p in sorted(files[:3]))
    np.testing.assert_array_equal(record.waveform_mps2, on_disk.waveform_mps2)


def test_channel_folders_inside_an_archive_make_one_record(
    tmp_path: Path, temp_dirs: list[Path]
) -> None:
    """datools ``{EW2,NS2,UD2}/<stem>.<CH>.MSEED`` at the top of an archive: one record."""
    paths = write_datools_mseed(tmp_path / "src")
    on_disk = read_record(paths["UD2"])[0]
    archive = pack(tmp_path / "datools.tar.gz", list(paths.values()), tmp_path / "src")
    (record,) = read_record(f"{archive}:NS2/TSTH012001021200.NS2.MSEED")
    assert set(record.source_files) == {
        f"{archive}:{c}/TSTH012001021200.{c}.MSEED" for c in ("EW2", "NS2", "UD2")
    }
    assert record.station_code == on_disk.station_code == "TSTH01"
    np.testing.assert_array_equal(record.waveform_mps2, on_disk.waveform_mps2)


def test_read_record_on_members_and_its_errors(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = write_knet_files(src, "TST0012001021200", {"NS": "N-S", "EW": "E-W"})  # no UD
    archive = pack(tmp_path / "a.tar.gz", files, src)
    with pytest.raises(ReaderError, match="need UD, NS, EW") as info:
        read_record(f"{archive}:TST0012001021200.NS")
    assert info.value.path.startswith(f"{archive}:")
    assert "/tmp" not in str(info.value).replace(str(tmp_path), "")
    with pytest.raises(ReaderError, match="no such archive member"):
        read_record(f"{archive}:nothing.NS")
    with pytest.raises(ReaderError, match="ARCHIVE:MEMBER"):
        read_record(archive)


def test_split_member() -> None:
    assert split_member("/d/20240623225400.kik.tar.gz:CHBH102406232254.EW2") == (
        Path("/d/20240623225400.kik.tar.gz"),
        "CHBH102406232254.EW2",
    )
    assert split_member("/d/a.ZIP:sub/x.asc") == (Path("/d/a.ZIP"), "sub/x.asc")
    assert split_member("/d/plain.NS") is None


def test_predict_reads_archives_like_ingest(tmp_path: Path, stations: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = write_knet_files(src, "TST0012001021200", KNET_DIRS)
    (tmp_path / "in").mkdir()
    good = pack(tmp_path / "in" / "20200102120000.knt.tar.gz", files, src)
    bad = _truncated(pack(tmp_path / "in" / "b.zip", files, src))
    pairs, skipped = read_inputs([tmp_path / "in"], stations=_table(load_station_csv(stations)),
                                 pick=False)  # fmt: skip
    (meta,) = [m for m, _ in pairs]
    assert set(meta["trace_source_file"].split(";")) == {
        f"{good}:TST0012001021200.{c}" for c in ("NS", "EW", "UD")
    }
    assert meta["station_vs30_mps"] == 312.5
    (skip,) = skipped
    assert skip["source_file"] == str(bad) and "corrupt or truncated" in skip["reason"]
