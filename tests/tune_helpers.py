"""A tiny tune set-up shared by the tune tests: small data, 10 s windows, tiny models."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

TINY_SPACE = {
    "model": ["categorical", ["cnn_lstm", "cnn"]],
    "lr": ["float", 1.0e-3, 1.0e-2, "log"],
    "batch_size": 16,
    "segmentation": ["categorical", ["p_centred", "s_start"]],
    "window_s": 10.0,
    "ps_channel": ["categorical", [True, False]],
    "representation": "waveform",
}
TINY_HPARAMS = {
    "cnn_lstm": {
        "conv_channels": ["int", 4, 8],
        "n_conv_blocks": 2,
        "lstm_hidden": 8,
        "lstm_layers": 1,
        "head_hidden": 8,
    },
    "cnn": {"conv_channels": ["int", 4, 8], "n_conv_blocks": 3, "head_hidden": 8},
}


def make_prepared(root: Path) -> Path:
    from deepvs30.prepare import PrepareParams, prepare
    from tiny_dataset import make_tiny_dataset

    data = make_tiny_dataset(root / "data", n_stations=14, n_events=3, duration_s=30)
    prepare(data, root / "prepared", PrepareParams())
    _mlflow_template(root / MLFLOW_TEMPLATE)
    return root / "prepared"


MLFLOW_TEMPLATE = "mlflow-template.db"


def _mlflow_template(path: Path) -> None:
    """An empty MLflow SQLite store, migrated once (migrations take seconds) and copied."""
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import mlflow; mlflow.set_tracking_uri('sqlite:///' + "
            f"{str(path)!r}); mlflow.MlflowClient().search_experiments()",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )


def tiny_params(workdir: Path, prepared: Path, **tune) -> dict:
    """params.yaml as a dict: the repository's, with a tiny tune section and local stores."""
    template = prepared.parent / MLFLOW_TEMPLATE
    if template.is_file() and not (workdir / "mlflow.db").exists():
        shutil.copyfile(template, workdir / "mlflow.db")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"]["out"] = str(prepared)
    params["data"]["path"] = str(prepared.parent / "data")
    params["train"].update(num_threads=1, patience=5)
    params["mlflow"].update(
        tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}", artifact_root=str(workdir / "mlruns")
    )
    section = copy.deepcopy(params["tune"])
    section.update(
        study_name="tiny",
        n_trials=3,
        max_epochs=2,
        storage=f"sqlite:///{workdir / 'optuna.db'}",
        out=str(workdir / "models" / "tune"),
        space=copy.deepcopy(TINY_SPACE),
        hparams=copy.deepcopy(TINY_HPARAMS),
        heartbeat_s=2,
        grace_s=6,
        sampler={"name": "tpe", "seed": 7, "n_startup_trials": 2},
        pruner={"name": "none"},
    )
    section.update(tune)
    params["tune"] = section
    params["__path__"] = str(workdir / "params.yaml")
    return params


def write_params(params: dict) -> Path:
    path = Path(params["__path__"])
    path.write_text(yaml.safe_dump({k: v for k, v in params.items() if k != "__path__"}))
    return path


def tune_cmd(params_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "deepvs30", "--params", str(params_path), "tune", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TUNE_STORAGE", "MLFLOW_TRACKING_URI")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def run_cli(params_path: Path, cwd: Path, *args: str, env: dict | None = None, timeout=600):
    return subprocess.run(
        tune_cmd(params_path, *args),
        cwd=cwd,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def study_of(storage: str, name: str = "tiny"):
    import optuna

    from deepvs30.tune import with_driver

    return optuna.load_study(study_name=name, storage=with_driver(storage))


def mlflow_runs(params: dict, study: str = "tiny"):
    """(parent runs, child runs, registered versions) of a study."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(params["mlflow"]["tracking_uri"])
    client = MlflowClient()
    exp = client.get_experiment_by_name(params["mlflow"]["experiment"])
    runs = client.search_runs([exp.experiment_id], f"tags.optuna_study = '{study}'")
    parents = [r for r in runs if r.data.tags.get("deepvs30_role") == "tune_parent"]
    children = [r for r in runs if r.data.tags.get("deepvs30_role") == "tune_trial"]
    versions = client.search_model_versions(f"name = '{params['mlflow']['registered_model']}'")
    versions = [v for v in versions if v.tags.get("optuna_study") == study]
    return parents, children, versions
