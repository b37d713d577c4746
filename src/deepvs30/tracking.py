"""MLflow set-up: one place that says where runs and models go.

Default: a SQLite tracking store ``mlflow.db`` beside ``mlruns/`` (artifacts), nothing to start.
``MLFLOW_TRACKING_URI`` (e.g. a shared tracking server) overrides it without editing code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MlflowParams:
    experiment: str = "deepvs30"
    registered_model: str = "deepvs30"
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_root: str = "mlruns"


def configure(params: MlflowParams) -> str:
    """Point MLflow at the tracking store and experiment; returns the tracking URI used."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = os.environ.get("MLFLOW_TRACKING_URI", params.tracking_uri)
    if uri.startswith("postgresql://"):  # SQLAlchemy 2.1 reads it as psycopg 3; we ship psycopg2
        uri = "postgresql+psycopg2://" + uri[len("postgresql://") :]
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(params.experiment) is None:
        artifact_location = None
        if uri.startswith("sqlite:") or uri.startswith("file:"):
            artifact_location = Path(params.artifact_root).resolve().as_uri()
        mlflow.create_experiment(params.experiment, artifact_location=artifact_location)
    mlflow.set_experiment(params.experiment)
    return uri


OWNER_TAG = "deepvs30.owner"  # pid@host of the process that started a run


def start_run(run_name: str | None = None, nested: bool = False):
    """``mlflow.start_run`` in the configured experiment, the run tagged with its process;
    the experiment's runs that killed processes of this host left RUNNING are first ended
    as KILLED (a SIGKILL ends no run: :func:`end_killed_runs`)."""
    import mlflow

    from deepvs30.dataset import process_owner

    end_killed_runs()
    return mlflow.start_run(run_name=run_name, nested=nested, tags={OWNER_TAG: process_owner()})


def end_killed_runs() -> list[str]:
    """Set to KILLED the active experiment's RUNNING runs started (:func:`start_run`) by a
    process of this host that is gone; another host's runs are left alone. Their ids."""
    import socket

    import mlflow

    from deepvs30.dataset import owner_gone

    host = socket.gethostname()
    running = mlflow.search_runs(
        filter_string=f"attributes.status = 'RUNNING' and tags.`{OWNER_TAG}` LIKE '%@{host}'",
        output_format="list",
    )
    ended = []
    for run in running:
        if owner_gone(run.data.tags[OWNER_TAG]):
            mlflow.MlflowClient().set_terminated(run.info.run_id, status="KILLED")
            ended.append(run.info.run_id)
    if ended:
        log.warning("ended %d MLflow run(s) left RUNNING by killed processes: %s",
                    len(ended), ", ".join(ended))  # fmt: skip
    return ended


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def data_version(data_dir: str | Path) -> str:
    """The dataset's content hash, in the form DVC writes to ``data.dvc`` (``dvc:<md5>.dir``),
    so it names the data actually used: equal to data.dvc's when data/ matches it, and a
    different hash (with a warning) when data/ was regenerated or edited."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return "unknown"
    version = f"dvc:{dvc_dir_md5(data_dir)}.dir"
    dvc_file = data_dir.with_name(data_dir.name + ".dvc")
    if dvc_file.is_file():
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", [])
        pinned = f"dvc:{outs[0]['md5']}" if outs and "md5" in outs[0] else None
        if pinned and pinned != version and (str(data_dir), version) not in _WARNED:
            _WARNED.add((str(data_dir), version))
            log.warning("%s differs from %s (%s, pinned %s): runs record the data used",
                        data_dir, dvc_file.name, version, pinned)  # fmt: skip
    return version


_FILE_MD5: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> md5, this process
_WARNED: set[tuple[str, str]] = set()


def dvc_dir_md5(data_dir: Path) -> str:
    """DVC 3's directory hash: md5 of the JSON list of {md5, relpath} of its files, sorted."""
    entries = [{"md5": _file_md5(p), "relpath": p.relative_to(data_dir).as_posix()}
               for p in data_dir.rglob("*") if p.is_file()]  # fmt: skip
    entries.sort(key=lambda e: e["relpath"])  # DVC's order: the relpath strings
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def _file_md5(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_MD5:
        digest = hashlib.md5()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        _FILE_MD5[key] = digest.hexdigest()
    return _FILE_MD5[key]


def flatten(prefix: str, value: object) -> dict[str, object]:
    """Nested params as flat MLflow keys: {"a": {"b": 1}} → {"a.b": 1}."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, sub in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), sub))
        return out
    return {prefix: value}


def numeric_leaves(prefix: str, value: object) -> dict[str, float]:
    """The finite numbers of a nested dict as flat MLflow metric keys."""
    flat = flatten(prefix, value)
    out = {}
    for key, sub in flat.items():
        if isinstance(sub, bool):
            sub = float(sub)
        if isinstance(sub, int | float) and sub == sub and abs(sub) != float("inf"):
            out[key.replace(" ", "_")] = float(sub)
    return out


def log_parent_run(params: MlflowParams, run_name: str, metrics: dict, out_dir: Path) -> str:
    """One MLflow run holding a benchmark's metrics (flattened) and its output files
    (everything in ``out_dir`` but its ``work/`` folder). Returns the run id."""
    import mlflow

    configure(params)
    with start_run(run_name=run_name) as run:
        mlflow.set_tags({"git_commit": git_commit(), "kind": run_name})
        mlflow.log_metrics(numeric_leaves("", metrics.get("targets", {})))
        for row in metrics.get("summary", []):
            key = f"{row['scheme']}.{row['arm']}"
            mlflow.log_metrics({f"{key}.{m}": float(row[m]) for m in
                                ("mape_pct_mean", "std_ln_mean", "spearman_rho_mean")
                                if row.get(m) is not None})  # fmt: skip
        for path in sorted(Path(out_dir).iterdir()):
            if path.is_file():
                mlflow.log_artifact(str(path))
        return run.info.run_id
