"""Streaming, parallel and resumable ``ingest`` (shards under ``<out>.partial``): the same
dataset, byte for byte, whatever the worker count and shard size; a rerun after ``kill -9``
that ends as an uninterrupted run; peak memory that does not grow with the number of records."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
import tracemalloc
import zipfile
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io as sio

from deepvs30 import ingest
from deepvs30.config import section
from deepvs30.errors import ConfigError
from deepvs30.ingest import (
    FINGERPRINT_FILE,
    QUARANTINE_FILE,
    IngestParams,
    IngestSummary,
    ingest_paths,
    partial_dir,
    read_quarantine,
    worker_count,
)
from test_readers_synthetic import _knet_file, quake, write_nsmn

REPO = Path(__file__).resolve().parents[1]
KNET_DIRS = {"NS": "N-S", "EW": "E-W", "UD": "U-D"}
KIK_DIRS = {"NS1": "1", "EW1": "2", "UD1": "3", "NS2": "4", "EW2": "5", "UD2": "6"}
STATIONS = """network,station,lat,lon,vs30_mps,vs30_method
BO,TST001,36.1,140.1,312.5,unknown
TK,9999,38.1,27.1,412.5,measured
"""
T0 = datetime(2020, 1, 2, 12, 0, 10)


# ---------------------------------------------------------------- small raw inputs


def knet_record(
    folder: Path, index: int, dirs: dict[str, str] = KNET_DIRS, code: str = "TST001"
) -> list[Path]:
    """One K-NET (or KiK-net) record of station ``code``, recorded ``index`` minutes after T0:
    a distinct record for each index."""
    rng = np.random.default_rng(index)
    when = T0 + timedelta(minutes=index)
    paths = []
    for suffix, direction in dirs.items():
        path = folder / f"{code}{when:%y%m%d%H%M}.{suffix}"
        _knet_file(path, direction, rng.integers(-900, 900, 1600))
        text = path.read_text().replace("Station Code      TST001", f"Station Code      {code}")
        path.write_text(text.replace("2020/01/02 12:00:10", f"{when:%Y/%m/%d %H:%M:%S}"))
        paths.append(path)
    return paths


def write_mat(path: Path, vs30_mps: float = 400.0, n_samples: int = 3000) -> Path:
    """An AFAD .mat record of station 1234 with its Vs30 and P/S in the file."""
    rng = np.random.default_rng(n_samples)
    accel = rng.normal(0, 0.5, (n_samples, 3))
    accel[1000:1500] += rng.normal(0, 50.0, (500, 3))
    eq = {
        "anEQ": {
            "Accel": accel,
            "sampling": 0.01,
            "statID": 1234,
            "statco": [38.0, 27.0],
            "epicenter": [38.1, 27.1],
            "depth": 12000,
            "magnitudeval": 4.0,
            "magnitudetype": " ML",
            "Vs30": vs30_mps,
            "Rhyp": 15.0,
            "Ptime": 10.0,
            "Stime": 12.0,
            "pga": np.abs(accel).max(axis=0),
        }
    }
    sio.savemat(str(path), {"EQ": eq})
    return path


def pack(archive: Path, files: list[Path], root: Path) -> Path:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, f.relative_to(root).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tf:
            for f in files:
                tf.add(f, f.relative_to(root).as_posix())
    return archive


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[Path], Path]:
    """Plain files and archives with every outcome: ingested, read errors, unlabelled,
    borehole, duplicates within and across sources, conflicting labels, a corrupt archive,
    a missing path. Returns (inputs, station table)."""
    root = tmp_path_factory.mktemp("corpus")
    raw = root / "raw"
    (raw / "knet").mkdir(parents=True)
    for i in range(9):
        knet_record(raw / "knet", i)
    knet_record(raw / "knet", 0, KIK_DIRS, code="TSTH01")  # surface unlabelled, borehole not used
    write_nsmn(raw / "a_9999.txt", quake(seed=1), station="9999")
    write_nsmn(raw / "b_9999_copy.txt", quake(seed=1), station="9999")  # duplicate of a
    write_nsmn(raw / "c_8888.txt", quake(seed=2), station="8888")  # no label
    (raw / "d_broken.txt").write_text("STRONG GROUND MOTION RECORDS OF TURKIYE\nrubbish\n")
    write_mat(raw / "20200102030405_1234.mat", vs30_mps=400.0)
    write_mat(raw / "20200103030405_1234.mat", vs30_mps=450.0)  # conflicts with the one above
    for name, indices, extra in (
        ("20200102120000.knt.tar.gz", range(9, 14), True),
        ("20200102130000.zip", [0, 40], False),  # minute 0: a duplicate of a plain record
        ("20200102140000.knt.tar.gz", [50], False),  # made corrupt below
    ):
        src = root / name.split(".")[0]
        src.mkdir()
        members = [p for i in indices for p in knet_record(src, i)]
        if extra:  # the same station and start time as a_9999.txt: a duplicate across sources
            nsmn = src / "20200102030405_9999.txt"
            members.append(write_nsmn(nsmn, quake(seed=3), station="9999"))
        pack(raw / name, members, src)
    corrupt = raw / "20200102140000.knt.tar.gz"
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    stations = root / "stations.csv"
    stations.write_text(STATIONS)
    return [raw, root / "missing"], stations


def run_ingest(
    inputs: list[Path], stations: Path, out: Path, workers: int = 1, shard_records: int = 256
) -> IngestSummary:
    params = IngestParams(workers=workers, shard_records=shard_records)
    return ingest_paths(inputs, out, stations_csv=stations, params=params)


def dataset_content(out: Path) -> tuple[bytes, bytes, dict[str, np.ndarray]]:
    """metadata.csv and quarantine.csv as bytes, every array of waveforms.hdf5 by name."""
    with h5py.File(out / "waveforms.hdf5", "r") as h5:
        arrays = {name: h5["data"][name][()] for name in h5["data"]}
    return (out / "metadata.csv").read_bytes(), (out / QUARANTINE_FILE).read_bytes(), arrays


def assert_same_dataset(a: Path, b: Path) -> None:
    meta_a, quarantine_a, arrays_a = dataset_content(a)
    meta_b, quarantine_b, arrays_b = dataset_content(b)
    assert meta_a == meta_b
    assert quarantine_a == quarantine_b
    assert arrays_a.keys() == arrays_b.keys()
    for name, array in arrays_a.items():
        assert array.dtype == arrays_b[name].dtype and np.array_equal(array, arrays_b[name])


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> tuple[IngestSummary, Path]:
    inputs, stations = corpus
    out = tmp_path_factory.mktemp("reference") / "ds"
    return run_ingest(inputs, stations, out), out


# ---------------------------------------------------------------- same output, any layout


def test_reference_run_has_every_outcome(reference) -> None:
    summary, out = reference
    assert summary.balanced and (summary.ingested, summary.quarantined) == (16, 11)
    assert (summary.archives, summary.shards) == (2, 4)
    reasons = read_quarantine(out / QUARANTINE_FILE)["reason"].tolist()
    for expected in (
        "no such file or folder",
        "corrupt or truncated archive",
        "no Vs30 label",
        "borehole sensor not ingested",
        "conflicting Vs30 labels",
    ):
        assert any(expected in r for r in reasons), expected
    duplicates = [r for r in reasons if r.startswith("duplicate of")]
    assert len(duplicates) == 3  # b_9999_copy, the archive's 9999 record, the zip's minute 0
    assert not partial_dir(out).exists()


@pytest.mark.parametrize(("workers", "shard_records"), [(1, 1), (1, 7), (2, 1), (2, 7)])
def test_same_dataset_for_any_workers_and_shard_size(
    corpus, reference, tmp_path: Path, workers: int, shard_records: int
) -> None:
    inputs, stations = corpus
    summary = run_ingest(inputs, stations, tmp_path / "ds", workers, shard_records)
    assert summary.text() == reference[0].text().replace(str(reference[1]), str(tmp_path / "ds"))
    assert_same_dataset(reference[1], tmp_path / "ds")
    assert not partial_dir(tmp_path / "ds").exists()


def test_workers_param_takes_auto_and_refuses_zero(corpus, tmp_path: Path) -> None:
    ingest = section({"ingest": {"workers": "auto"}}, "ingest", IngestParams)
    assert ingest.workers == "auto" and worker_count("auto") >= 1
    with pytest.raises(ConfigError, match="ingest.workers"):
        run_ingest(*corpus, tmp_path / "ds", workers=0)
    with pytest.raises(ConfigError, match="ingest.shard_records"):
        run_ingest(*corpus, tmp_path / "ds", shard_records=0)


# ---------------------------------------------------------------- resume after kill -9

N_RESUME = 60  # records, one shard each: seconds of work, time enough to kill it midway

CHILD = """
import sys
from deepvs30.ingest import IngestParams, ingest_paths
if __name__ == "__main__":
    params = IngestParams(workers=int(sys.argv[4]), shard_records=1)
    ingest_paths([sys.argv[1]], sys.argv[2], stations_csv=sys.argv[3], params=params)
"""


@pytest.fixture(scope="module")
def many_records(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("many")
    (root / "raw").mkdir()
    for i in range(N_RESUME):
        knet_record(root / "raw", i)
    (root / "stations.csv").write_text(STATIONS)
    return root / "raw", root / "stations.csv"


def _manifests(out: Path) -> list[Path]:
    return sorted(partial_dir(out).glob("shards-*/*.json"))


def _kill_midway(raw: Path, stations: Path, out: Path, workers: int, whole_group: bool) -> int:
    """Start an ingest, SIGKILL it once a few shards are finished; the shards it finished."""
    script = out.parent / "child.py"
    script.write_text(CHILD)
    cmd = [sys.executable, str(script), str(raw), str(out), str(stations), str(workers)]
    child = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(_manifests(out)) < 3 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if whole_group:
        os.killpg(child.pid, signal.SIGKILL)
    else:
        child.send_signal(signal.SIGKILL)  # the parent alone: its workers must stop by themselves
    child.wait()
    _wait_group_gone(child.pid)
    finished = len(_manifests(out))
    assert 3 <= finished < N_RESUME, "the ingest was not interrupted midway"
    assert not (out / "metadata.csv").exists()
    return finished


def _wait_group_gone(pgid: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail("worker processes outlived their killed ingest")


def _plant_unfinished(out: Path) -> list[Path]:
    """What a kill leaves of a shard being written: waveforms without a manifest, a temporary
    manifest. Returns the planted files."""
    shards = next(partial_dir(out).glob("shards-*"))
    done = {p.stem for p in shards.glob("*.json")}
    shard_id = next(f"000000-{k:06d}" for k in range(N_RESUME) if f"000000-{k:06d}" not in done)
    planted = [shards / f"{shard_id}.h5", shards / f"{shard_id}.json.99999.tmp"]
    for path in planted:
        path.write_bytes(b"half-written")
    return planted


class _Stop(Exception):
    pass


def _stop(*args, **kwargs):
    raise _Stop


@pytest.mark.parametrize(("workers", "whole_group"), [(1, True), (2, False)])
def test_rerun_after_kill_ends_as_an_uninterrupted_run(
    many_records, tmp_path: Path, workers: int, whole_group: bool, caplog, monkeypatch
) -> None:
    raw, stations = many_records
    out = tmp_path / "killed" / "ds"
    out.parent.mkdir()
    finished = _kill_midway(raw, stations, out, workers, whole_group)
    planted = _plant_unfinished(out)

    with monkeypatch.context() as patch:  # a rerun stopped right after opening the work folder
        patch.setattr("deepvs30.ingest.read_shards", _stop)
        with pytest.raises(_Stop):
            run_ingest([raw], stations, out, workers, shard_records=1)
    assert not any(p.exists() for p in planted)  # unfinished shards are discarded ...
    assert len(_manifests(out)) == finished  # ... finished ones kept

    with caplog.at_level(logging.INFO, logger="deepvs30.ingest"):
        summary = run_ingest([raw], stations, out, workers, shard_records=1)
    assert f"{finished} finished shard(s) reused" in caplog.text
    assert summary.shards_reused == finished and summary.shards == N_RESUME
    assert summary.balanced and summary.ingested + summary.quarantined == N_RESUME
    assert not partial_dir(out).exists()
    whole = run_ingest([raw], stations, tmp_path / "whole" / "ds", workers, shard_records=1)
    assert (whole.ingested, whole.quarantined, whole.shards_reused) == (N_RESUME, 0, 0)
    assert_same_dataset(out, tmp_path / "whole" / "ds")


def test_other_inputs_start_clean_and_say_so(corpus, reference, tmp_path: Path, caplog) -> None:
    out = tmp_path / "ds"
    stale = partial_dir(out)
    (stale / "shards-0123456789abcdef").mkdir(parents=True)
    (stale / "shards-0123456789abcdef" / "000000-000000.json").write_text("{}")
    (stale / FINGERPRINT_FILE).write_text(json.dumps({"sha256": "0123456789abcdef"}))
    with caplog.at_level(logging.INFO, logger="deepvs30.ingest"):
        run_ingest(*corpus, out)
    assert "starting clean" in caplog.text
    assert_same_dataset(reference[1], out)
    assert not stale.exists()


# ---------------------------------------------------------------- memory

N_MEMORY = 260  # records of the small run; the large one has 4x. Both fill SeisBench buckets.
MEMORY_SAMPLES = 22_000  # per component: 264 kB of float32 per record

MEMORY_CHILD = """
import json, sys
import seisbench.data  # imported before the first figure: not part of either run
from deepvs30.ingest import IngestParams, ingest_paths

def peak_kb():
    with open("/proc/self/status") as fh:
        return int(next(l for l in fh if l.startswith("VmHWM")).split()[1])

out = {}
for folder in sys.argv[1:]:
    summary = ingest_paths([folder], folder + ".ds", params=IngestParams(pick=False))
    out[folder] = {"ingested": summary.ingested, "peak_kb": peak_kb()}
print(json.dumps(out))
"""


def _replicas(folder: Path, source: Path, n: int) -> None:
    """``n`` hard links of one .mat record, each named with its own origin time."""
    folder.mkdir()
    t0 = datetime(2020, 1, 2, 3, 4, 5)
    for i in range(n):
        os.link(source, folder / f"{t0 + timedelta(minutes=i):%Y%m%d%H%M%S}_1234.mat")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc (Linux)")
def test_peak_memory_does_not_grow_with_the_number_of_records(tmp_path: Path) -> None:
    """The large run's records hold >= 200 MB more samples than the small run's; its peak
    memory may grow by a quarter of that at most (holding every record would double it)."""
    source = write_mat(tmp_path / "source.mat", n_samples=MEMORY_SAMPLES)
    small, large = tmp_path / "small", tmp_path / "large"
    _replicas(small, source, N_MEMORY)
    _replicas(large, source, 4 * N_MEMORY)
    extra_mb = 3 * N_MEMORY * 3 * MEMORY_SAMPLES * 4 / 1e6
    assert extra_mb >= 200
    cmd = [sys.executable, "-c", MEMORY_CHILD, str(small), str(large)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [result[str(f)]["ingested"] for f in (small, large)] == [N_MEMORY, 4 * N_MEMORY]
    growth_mb = (result[str(large)]["peak_kb"] - result[str(small)]["peak_kb"]) / 1024
    assert growth_mb < extra_mb / 4, f"peak memory grew {growth_mb:.0f} MB for {extra_mb:.0f} MB"


N_MERGE = 256  # records of the small run (a full SeisBench bucket); the large one has 3x


def _merge_peak_mb(inputs: Path, out: Path, monkeypatch) -> tuple[IngestSummary, float]:
    """An ingest (in this process), and the peak of Python allocations while its shards are
    merged into the dataset (MB)."""
    merge, peaks_mb = ingest.merge_and_write, []

    def traced(*args, **kwargs) -> int:
        tracemalloc.start()
        try:
            return merge(*args, **kwargs)
        finally:
            peaks_mb.append(tracemalloc.get_traced_memory()[1] / 1e6)
            tracemalloc.stop()

    monkeypatch.setattr(ingest, "merge_and_write", traced)
    summary = ingest_paths([inputs], out, params=IngestParams(pick=False, shard_records=32))
    return summary, peaks_mb[0]


def test_merge_holds_nothing_per_record(tmp_path: Path, monkeypatch) -> None:
    """What the merge needs across shards (dedupe keys, trace names, quarantine rows, the
    metadata for metadata.csv) is on disk: 3x the records (a fifth of them duplicates),
    the same peak of Python allocations. Holding each kept record's metadata as Python
    objects costs ~3 kB a record: +1.5 MB here."""
    source = write_mat(tmp_path / "source.mat", n_samples=1500)
    peaks_mb = []
    for n in (N_MERGE, 3 * N_MERGE):
        inputs = tmp_path / f"in{n}"
        inputs.mkdir()
        _replicas(inputs / "a", source, n)
        _replicas(inputs / "b", source, n // 4)  # the same names: duplicates of a/
        summary, peak_mb = _merge_peak_mb(inputs, tmp_path / f"ds{n}", monkeypatch)
        assert (summary.ingested, summary.quarantined) == (n, n // 4)
        peaks_mb.append(peak_mb)
    growth_mb = peaks_mb[1] - peaks_mb[0]
    assert growth_mb < 0.5, f"peak grew {growth_mb:.2f} MB for {2 * N_MERGE} more records"


def test_bench_slopes_are_megabytes_per_thousand_records() -> None:
    from deepvs30.bench_ingest import slopes

    rows = [
        {"records": 1000, "peak_rss_mb": 400.0, "peak_anon_mb": 300.0, "dataset_mb": 100.0},
        {"records": 4000, "peak_rss_mb": 430.0, "peak_anon_mb": 306.0, "dataset_mb": 400.0},
    ]
    assert slopes(rows) == {
        "peak_rss_mb_per_1k_records": 10.0,
        "peak_anon_mb_per_1k_records": 2.0,
        "waveform_mb_per_1k_records": 100.0,
    }
    assert slopes(rows[:1]) == {}
