"""register stage: the evaluated model becomes a new version in the MLflow Model Registry.

The version is tagged with the data version, split, git commit and its test metrics, and gets
the alias ``challenger``; the very first version also becomes ``champion``. Moving the
champion afterwards is ``deepvs30 promote``'s decision, never this stage's.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from deepvs30.config import section
from deepvs30.errors import DeepVs30Error
from deepvs30.tracking import MlflowParams, configure, flatten

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class RegisterParams:
    out: str = "reports/registered.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model bundle folder with run.json (default: train.out)")
    parser.add_argument("--metrics", help="metrics.json of the evaluation")


def run(args: argparse.Namespace, params: dict) -> int:
    reg = section(params, "register", RegisterParams)
    mlflow_params = section(params, "mlflow", MlflowParams)
    model_dir = Path(args.model or params["train"]["out"])
    metrics_file = Path(args.metrics or params["evaluate"]["metrics_file"])
    info = register_model(model_dir, metrics_file, mlflow_params, extra_tags={})
    Path(reg.out).parent.mkdir(parents=True, exist_ok=True)
    Path(reg.out).write_text(json.dumps(info, indent=1))
    print(f"registered {info['name']} version {info['version']} (aliases: {info['aliases']})")
    return 0


def register_model(
    model_dir: Path,
    metrics_file: Path | None,
    mlflow_params: MlflowParams,
    extra_tags: dict[str, str],
) -> dict:
    import mlflow
    from mlflow import MlflowClient

    run_file = model_dir / "run.json"
    if not run_file.is_file():
        raise DeepVs30Error(f"{run_file}: missing; train the model first (deepvs30 train)")
    run_info = json.loads(run_file.read_text())
    configure(mlflow_params)
    client = MlflowClient()
    run = client.get_run(run_info["run_id"])
    tags = {
        "data_version": run.data.tags.get("data_version", "unknown"),
        "git_commit": run.data.tags.get("git_commit", "unknown"),
        "model_family": run.data.tags.get("model_family", "unknown"),
        "run_id": run_info["run_id"],
        **extra_tags,
    }
    if run_info.get("parent_model_uri"):
        tags["parent_model_uri"] = run_info["parent_model_uri"]
    if metrics_file is not None and metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        tags["split"] = f"{metrics.get('split_column')}:{metrics.get('split')}"
        for key, value in flatten(
            "test",
            {
                "station": metrics.get("station", {}),
                "baseline_median": metrics.get("baseline_median", {}),
                "baseline_hv": metrics.get("baseline_hv", {}),
            },
        ).items():
            if key.endswith(("mape_pct", "std_ln", "pearson_r_ln")):
                tags[key] = f"{value:.4f}"
    version = mlflow.register_model(
        run_info["model_uri"], mlflow_params.registered_model, tags=tags
    )
    name, number = mlflow_params.registered_model, version.version
    client.set_registered_model_alias(name, CHALLENGER, number)
    aliases = [CHALLENGER]
    try:
        client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        client.set_registered_model_alias(name, CHAMPION, number)
        client.set_model_version_tag(name, number, "promotion", "first registered version")
        aliases.append(CHAMPION)
    return {
        "name": name,
        "version": int(number),
        "run_id": run_info["run_id"],
        "model_uri": f"models:/{name}/{number}",
        "aliases": aliases,
        "tags": tags,
    }
