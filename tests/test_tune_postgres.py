"""Two concurrent tune workers on a real PostgreSQL server (Optuna storage and MLflow store).

The server is a throw-away one: initdb + pg_ctl from Debian's postgresql package (installed by
.ci/postgres-setup.sh) in a temporary folder, on a free port of 127.0.0.1. Without the
binaries the test is skipped, except under CI=true where it fails.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepvs30 import threads
from tune_helpers import (
    clean_env,
    make_prepared,
    mlflow_runs,
    study_of,
    tiny_params,
    tune_cmd,
    write_params,
)

pytestmark = pytest.mark.postgres


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version_key)
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parents[1].name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse root: run them as the `postgres` account then."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """URL prefix postgresql://tuner@127.0.0.1:PORT/ of a fresh server with two databases."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found; run .ci/postgres-setup.sh"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="deepvs30-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "tuner",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        _as_server_user(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="tuner", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE DATABASE optuna")
            cur.execute("CREATE DATABASE mlflow")
        conn.close()
        yield f"postgresql://tuner@127.0.0.1:{port}/"
    finally:
        subprocess.run(
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_on_postgres_register_best_once(postgres, tmp_path):
    from optuna.trial import TrialState

    prepared = make_prepared(tmp_path / "data_root")
    work = tmp_path / "work"
    work.mkdir()
    storage = postgres + "optuna"
    # SQLAlchemy 2.1 reads postgresql:// as psycopg 3; MLflow needs the psycopg2 driver named
    tracking = postgres.replace("postgresql://", "postgresql+psycopg2://") + "mlflow"
    params = tiny_params(work, prepared, n_trials=4, max_epochs=2, storage=storage)
    params_path = write_params(params)
    # two workers side by side on this machine: each takes its share of the cores (threads.py)
    env = threads.worker_env(
        threads.share_per_worker(2), clean_env(TUNE_STORAGE=storage, MLFLOW_TRACKING_URI=tracking)
    )

    # two workers started independently, as on two nodes: no --no-finalize, so each may
    # try to finalize; exactly one registration must come out of it
    workers = [
        subprocess.Popen(
            tune_cmd(params_path),
            cwd=work,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    for worker, out in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out[-4000:]

    study = study_of(storage)
    trials = study.trials
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.FAIL not in states
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 4 <= len(finished) <= 5  # n_trials, plus at most one started in a race
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    run_ids = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert len(set(run_ids)) == len(trials)

    params["mlflow"]["tracking_uri"] = tracking
    parents, children, versions = mlflow_runs(params)
    assert len(parents) == 1
    assert {c.info.run_id for c in children} == set(run_ids)
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert len(versions) == 1, [v.version for v in versions]
    assert versions[0].tags["optuna_trial"] == str(study.best_trial.number)
    assert versions[0].run_id == study.best_trial.user_attrs["mlflow_run_id"]

    import optuna

    from deepvs30.tune import with_driver

    assert optuna.get_all_study_names(with_driver(storage)) == ["tiny"]  # no helper studies
    record = study.user_attrs[f"finalize.trial-{study.best_trial.number}"]
    assert record["registered"]["version"] == versions[0].version
    assert record["worker"] in {t.user_attrs["worker"] for t in trials}
    # one worker registered; the other found the claim (taken, or already registered)
    assert sum(f"-> {versions[0].name} version" in out for out in outputs) == 1
