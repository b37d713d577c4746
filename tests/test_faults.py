"""Faults (issue 15, item 5): ``kill -9`` during ``deepvs30 prepare``, ``train``, ``pretrain`` and
``register`` leaves no half-written output and a rerun ends as an uninterrupted run (pretrain,
which keeps no checkpoint, reruns whole); mutated real files neither crash nor hang the
readers; the served model answers concurrent clients without 5xx.

Each stage runs as a subprocess in its own process group and is SIGKILLed mid-work: once its
temporary output appears (prepare's waveforms, train's and pretrain's model file) or, for
register (whose registry calls take milliseconds), once a wrapper around MLflow's client says
the version is created but not yet described (it then waits to be killed). Reruns run
in-process; the uninterrupted runs are the shared tiny models of tests/model_fixture.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch

from deepvs30.bench_faults import (
    FUZZ_SEED,
    MUTATIONS,
    OUTCOMES,
    ReaderChild,
    fuzz_real_files,
    load_summary,
    read_like_ingest,
    serve_load,
)
from deepvs30.cli import main
from deepvs30.inference import ModelBundle
from deepvs30.prepare import load_prepared
from model_fixture import served_champion

BIN = Path(sys.executable).parent
KILL_WAIT_S = 180.0
DATOOLS = "kiknet_datools_berse/examples/data/Example_2/FKSH11/small_strain"
# Runs ``deepvs30.cli.main(argv)`` with one function wrapped: WHEN (before|after) it runs, the
# wrapper writes MARKER and sleeps until the test kills the process.
PAUSED = """
import importlib, sys, time
from pathlib import Path
when, target, marker, argv = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4:]
module, _, attr = target.partition(":")
owner = importlib.import_module(module)
*parents, name = attr.split(".")
for part in parents:
    owner = getattr(owner, part)
original = getattr(owner, name)

def paused(*args, **kwargs):
    if when == "before":
        marker.write_text("paused"); time.sleep(600)
    result = original(*args, **kwargs)
    marker.write_text("paused"); time.sleep(600)
    return result

setattr(owner, name, paused)
from deepvs30.cli import main
sys.exit(main(argv))
"""


# ---------------------------------------------------------------- killing a stage


def _env() -> dict[str, str]:
    """The stage reads its tracking store from the params file, not from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}


def start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(command, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip


def start_cli(argv: list[str], log: Path) -> subprocess.Popen:
    return start([str(BIN / "deepvs30"), *argv], log)


def start_paused(argv: list[str], when: str, target: str, marker: Path) -> subprocess.Popen:
    command = [sys.executable, "-c", PAUSED, when, target, str(marker), *argv]
    return start(command, marker.with_suffix(".log"))


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], log: Path) -> None:
    """SIGKILL ``proc``'s process group as soon as ``ready()``; it must still be working then."""
    deadline = time.monotonic() + KILL_WAIT_S
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the stage was not caught mid-work:\n{log.read_text()[-3000:]}")
        time.sleep(0.005)
    assert proc.poll() is None, f"the stage finished before the kill:\n{log.read_text()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the group of the stage this test started
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def temp_entries(out: Path) -> list[str]:
    """What sits beside ``out`` besides ``out`` itself and the checkpoint (temporary folders)."""
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}"))


def hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def killed_prepare(models, tmp_path_factory) -> dict:
    """A prepare killed while it writes, then its rerun."""
    root = tmp_path_factory.mktemp("prepare_kill")
    argv = ["--params", str(models.params_file("faults_prepare")), "prepare", "--out"]
    reference = models.prepared  # the same data and parameters, uninterrupted
    out = root / "killed" / "prepared"
    out.parent.mkdir()
    log = root / "prepare.log"
    proc = start_cli([*argv, str(out)], log)
    kill_when(proc, lambda: any(out.parent.glob(".prepared.tmp-*/waveforms.npy")), log)
    killed = {"exists": out.exists(), "hashes": hashes(out) if out.exists() else {}}
    killed["temp"] = temp_entries(out)
    assert main([*argv, str(out)]) == 0
    return {"reference": hashes(reference), "killed": killed, "out": out}


def test_killed_prepare_leaves_no_half_written_folder_and_reruns_identically(
    killed_prepare,
) -> None:
    killed, out = killed_prepare["killed"], killed_prepare["out"]
    assert killed["temp"], "the kill came before prepare wrote anything"
    if killed["exists"]:  # absent, or complete: never a half-written prepared folder
        assert killed["hashes"] == killed_prepare["reference"]
    waves, records, summary = load_prepared(out)
    assert len(records) == waves.shape[0] == summary["counts"]["records_prepared"] > 0
    assert hashes(out) == killed_prepare["reference"]  # prepare is deterministic


def test_rerun_of_killed_prepare_removes_its_temporary_folder(killed_prepare) -> None:
    assert temp_entries(killed_prepare["out"]) == []


# ---------------------------------------------------------------- train


def assert_absent_or_complete(out: Path) -> None:
    if out.exists():
        assert (out / "run.json").is_file(), sorted(p.name for p in out.iterdir())
        ModelBundle.load(out)


def runs_of(models, pid: int) -> list:
    """The MLflow runs that process ``pid`` of this host started (tracking.start_run)."""
    import socket

    import mlflow

    from deepvs30.tracking import OWNER_TAG

    mlflow.set_tracking_uri(models.mlflow.tracking_uri)
    return mlflow.search_runs(
        search_all_experiments=True, output_format="list",
        filter_string=f"tags.`{OWNER_TAG}` = '{pid}@{socket.gethostname()}'",
    )  # fmt: skip


def test_killed_train_resumes_and_never_leaves_a_half_written_model(models, tmp_path) -> None:
    out, checkpoint = tmp_path / "models" / "current", tmp_path / "models" / "checkpoint.pt"
    train = {"out": str(out), "checkpoint": str(checkpoint)}
    argv = ["--params", str(models.params_file("faults_train", train=train)), "train"]
    log = tmp_path / "train.log"
    # killed while it writes the model (trained; being logged to MLflow, no run.json yet)
    killed = start_cli(argv, log)
    kill_when(killed, lambda: any(out.parent.rglob("model.pt")), log)
    assert_absent_or_complete(out)
    checkpoint.with_suffix(".tmp").write_bytes(b"half")  # what a kill inside torch.save leaves
    assert [r.info.status for r in runs_of(models, killed.pid)] == ["RUNNING"]

    assert main(argv) == 0  # resumes from the checkpoint: no epoch left to train
    assert [r.info.status for r in runs_of(models, killed.pid)] == ["KILLED"]
    assert_absent_or_complete(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["checkpoint.pt", "current"]
    # the uninterrupted run of the same configuration: models.good (tests/model_fixture.py)
    assert (out / "history.csv").read_text() == (models.good / "history.csv").read_text()
    ours, good = ModelBundle.load(out).network.state_dict(), ModelBundle.load(models.good)
    for key, value in good.network.state_dict().items():
        assert torch.equal(ours[key], value), key


def test_killed_pretrain_leaves_no_half_written_bundle_and_reruns_whole(models, tmp_path) -> None:
    out = tmp_path / "models" / "pretrained"
    pretrain = {"out": str(out), "epochs": 2, "patience": 2}
    argv = ["--params", str(models.params_file("faults_pretrain", pretrain=pretrain)), "pretrain"]
    log = tmp_path / "pretrain.log"
    # killed while it writes the bundle (pretrained; being logged to MLflow, not yet published)
    killed = start_cli(argv, log)
    kill_when(killed, lambda: any(out.parent.rglob("model.pt")), log)
    assert not out.exists()  # the bundle is published by one rename, after everything is written
    assert temp_entries(out), "the kill came before pretrain staged anything"
    assert [r.info.status for r in runs_of(models, killed.pid)] == ["RUNNING"]

    assert main(argv) == 0
    assert [r.info.status for r in runs_of(models, killed.pid)] == ["KILLED"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["pretrained"]  # staging swept
    assert {"run.json", "pretext.json", "history.csv"} <= {p.name for p in out.iterdir()}
    assert len(pd.read_csv(out / "history.csv")) == 2
    assert_absent_or_complete(out)  # present here: loads as a bundle


# ---------------------------------------------------------------- register


def registry_state(models, name: str, tmp: Path) -> list[dict]:
    """Each version of ``name``: its registration tag, description, aliases, artefacts."""
    import mlflow

    mlflow.set_tracking_uri(models.mlflow.tracking_uri)
    client = mlflow.MlflowClient()
    states = []
    for found in client.search_model_versions(f"name='{name}'"):
        v = client.get_model_version(name, found.version)  # search leaves aliases out
        local = Path(mlflow.artifacts.download_artifacts(
            f"models:/{name}/{v.version}", dst_path=str(tmp / f"v{v.version}")))  # fmt: skip
        states.append({"version": int(v.version), "registration": v.tags.get("registration"),
                       "card": bool(v.description), "aliases": sorted(v.aliases),
                       "artefacts": (local / "MLmodel").is_file()})  # fmt: skip
    return sorted(states, key=lambda s: s["version"])


def test_killed_register_leaves_no_half_registered_version(models, tmp_path) -> None:
    name, out = "faults_register", tmp_path / "registered.json"
    params = models.params_file(name, register={"out": str(out)})
    argv = ["--params", str(params), "register", "--model", str(models.good),
            "--metrics", str(models.good / "metrics.json")]  # fmt: skip
    marker = tmp_path / "created.marker"  # the version created; no model card, no alias yet
    proc = start_paused(argv, "before", "mlflow.tracking:MlflowClient.update_model_version", marker)
    kill_when(proc, marker.is_file, marker.with_suffix(".log"))
    assert not out.exists()
    after_kill = registry_state(models, name, tmp_path / "kill")
    assert [s["registration"] for s in after_kill] == ["incomplete"]  # marked, not registered
    assert after_kill[0]["aliases"] == [] and after_kill[0]["artefacts"]

    assert main(argv) == 0
    state = registry_state(models, name, tmp_path / "rerun")
    assert state == [{"version": 1, "registration": "complete", "card": True,
                      "aliases": ["challenger", "champion"], "artefacts": True}]  # fmt: skip
    assert json.loads(out.read_text())["version"] == 1


# ---------------------------------------------------------------- mutated real files


@pytest.mark.realdata
def test_mutated_real_files_give_named_errors_never_crashes_or_hangs(realdata_dir) -> None:
    result = fuzz_real_files(realdata_dir, n_files=30, seed=FUZZ_SEED, timeout_s=20.0)
    assert result["crashes"] == 0, json.dumps(result["crash_examples"], indent=1)
    assert result["hangs"] == 0, json.dumps(result["hang_examples"], indent=1)
    assert sum(result[k] for k in OUTCOMES) == result["files"] == 30
    assert result["named_errors"] > 0  # the mutations do break files
    assert set(result["by_mutation"]) == set(MUTATIONS)
    assert {"K-NET/KiK-net ASCII (NIED)", "MATLAB v5 .mat (struct EQ.anEQ)"} <= set(
        result["formats_fuzzed"]
    )


@pytest.mark.realdata
def test_itaca_fortran_exponents_of_either_case_and_overflow(realdata_dir, tmp_path) -> None:
    """Found by the fuzz: ``2.d726000`` (a flipped byte) escaped the ITACA reader as a
    ValueError (masked by read_group); lower-case exponents read, an overflow is named."""
    for source in (realdata_dir / "gmpe_smtk_laquila" / "16840").iterdir():
        (tmp_path / source.name).write_bytes(source.read_bytes())
    h1 = tmp_path / "16840_H1.cor.acc"
    paths = [str(p) for p in sorted(tmp_path.glob("*.cor.acc"))]
    original = read_like_ingest(paths)
    h1.write_text(h1.read_text().replace(" 4.1965000E-05", " 4.1965000d-05", 1))
    assert read_like_ingest(paths) == original == {"outcome": "ok", "detail": ""}
    h1.write_text(h1.read_text().replace(" 4.1963000E-05", " 2.d726000", 1))
    overflow = read_like_ingest(paths)
    assert overflow["outcome"] == "named_errors" and not overflow["masked"]
    assert "NaN/inf samples" in overflow["detail"]


@pytest.mark.realdata
def test_miniseed_start_time_weeks_off_is_a_gap_not_gigabytes(realdata_dir, tmp_path) -> None:
    """Found by the fuzz: one flipped byte in a miniSEED start time (March -> February) made
    obspy's merge fill a 45-day gap with masked samples: 6.8 GB and 18 s for a 40 kB file."""
    import tracemalloc

    import obspy

    source = realdata_dir / DATOOLS
    for channel in ("EW2", "NS2", "UD2"):
        (tmp_path / channel).mkdir()
        for f in (source / channel).glob("FKSH111103221819.*"):
            (tmp_path / channel / f.name).write_bytes(f.read_bytes())
    ns2 = next((tmp_path / "NS2").iterdir())
    trace = obspy.read(str(ns2))[0]
    head, tail = trace.slice(endtime=trace.stats.starttime + 30), trace.copy()
    tail.trim(starttime=trace.stats.starttime + 30.01)
    tail.stats.starttime -= 45 * 86400
    obspy.Stream([head, tail]).write(str(ns2), format="MSEED", encoding="FLOAT64")
    tracemalloc.start()
    try:
        result = read_like_ingest([str(p) for p in sorted(tmp_path.rglob("*.MSEED"))])
        peak_bytes = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["outcome"] == "named_errors" and "gaps in the data" in result["detail"]
    assert peak_bytes < 200e6


def test_fuzz_harness_tells_crashes_hangs_and_named_errors_apart(tmp_path) -> None:
    assert read_like_ingest([None])["outcome"] == "crashes"  # a TypeError, not a named error
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a record\n")
    named = read_like_ingest([str(garbage)])
    assert named["outcome"] == "named_errors" and str(garbage) in named["detail"]
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)  # opening it blocks forever: a reader that hangs
    child = ReaderChild()
    try:
        assert child.read([str(fifo)], timeout_s=1.0)["outcome"] == "hangs"
        assert child.read([str(garbage)], timeout_s=20.0)["outcome"] == "named_errors"
    finally:
        child.close()


# ---------------------------------------------------------------- serving under load


def test_load_summary_counts_5xx_and_errors() -> None:
    rows = [(200, 10.0), (200, 30.0), (503, 20.0), (400, 1.0), ("ConnectionResetError: x", 5.0)]
    got = load_summary(rows, clients=2, seconds=1.0)
    assert (got["requests"], got["status_5xx"], got["other_errors"]) == (5, 1, 2)
    assert got["p50_ms"] == 15.0
    assert got["error_examples"] == ["ConnectionResetError: x", "HTTP 400"]


def test_served_model_under_concurrent_load_gives_no_5xx_or_errors(models, monkeypatch) -> None:
    uri = served_champion(models)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", models.mlflow.tracking_uri)
    result = serve_load(uri, clients=5, seconds=5.0)
    print(json.dumps(result))  # pytest -s shows the figures
    assert result["warmup_status"] == 200, result
    assert result["status_5xx"] == 0 and result["other_errors"] == 0, result
    assert result["requests"] >= 5
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_an_owner_is_gone_only_when_its_process_on_this_host_has_ended() -> None:
    import socket

    from deepvs30.dataset import owner_gone, process_owner

    host = socket.gethostname()
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert not owner_gone(process_owner())  # this process
    assert owner_gone(f"{ended.pid}@{host}")
    assert not owner_gone(f"{ended.pid}@another-host")  # not ours to judge
    assert not owner_gone("garbage") and not owner_gone(f"x@{host}")
