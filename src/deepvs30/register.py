"""register stage: the evaluated model becomes a new version in the MLflow Model Registry.

The version is tagged with the data version, split, git commit and its test metrics, its
description is the model card (:func:`deepvs30.model_card.model_card`), and it gets the alias
``challenger``; the very first version also becomes ``champion``. Moving the champion
afterwards is ``deepvs30 promote``'s decision, never this stage's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from deepvs30.config import section
from deepvs30.errors import DeepVs30Error
from deepvs30.model_card import SYNTHETIC_USE, model_card
from deepvs30.tracking import MlflowParams, configure, flatten

CHAMPION = "champion"
CHALLENGER = "challenger"
# how many of the real benchmark's targets the version meets (real model; promote reads it)
TARGETS_TAG = "test.targets_met"
# Version tag: "incomplete" from the version's creation until its model card and aliases are
# set, then "complete". A rerun after a kill finishes the incomplete version of the same run
# instead of registering a second one.
REGISTRATION = "registration"
INCOMPLETE, COMPLETE = "incomplete", "complete"
log = logging.getLogger(__name__)


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
    out = Path(reg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")  # a rerun overwrites one left by a kill
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(out)  # whole or absent
    print(f"registered {info['name']} version {info['version']} (aliases: {info['aliases']})")
    return 0


def register_model(
    model_dir: Path,
    metrics_file: Path | None,
    mlflow_params: MlflowParams,
    extra_tags: dict[str, str],
    intended_use: str = SYNTHETIC_USE,
) -> dict:
    """A new version of ``mlflow_params.registered_model`` from the run in
    ``model_dir/run.json``, tagged, described by its model card, aliased ``challenger``."""
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
    metrics = {}
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
        if metrics.get("targets_met") is not None:  # the real model: the targets met
            tags[TARGETS_TAG] = str(int(metrics["targets_met"]))
    name = mlflow_params.registered_model
    number = _new_or_unfinished_version(client, name, run_info, tags)
    card = model_card(card_facts(name, number, run, tags, metrics, intended_use))
    client.update_model_version(name, number, description=card)
    client.set_registered_model_alias(name, CHALLENGER, number)
    aliases = [CHALLENGER]
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        champion = None
    if champion is None or str(champion.version) == str(number):  # resumed: set it again
        client.set_registered_model_alias(name, CHAMPION, number)
        client.set_model_version_tag(name, number, "promotion", "first registered version")
        aliases.append(CHAMPION)
    client.set_model_version_tag(name, number, REGISTRATION, COMPLETE)
    return {
        "name": name,
        "version": int(number),
        "run_id": run_info["run_id"],
        "model_uri": f"models:/{name}/{number}",
        "aliases": aliases,
        "tags": tags,
    }


def _new_or_unfinished_version(client, name: str, run_info: dict, tags: dict[str, str]) -> str:
    """The number of the version to describe and alias: the run's version left incomplete by
    a killed registration (its tags refreshed), else a new one created marked incomplete."""
    import mlflow

    try:
        versions = client.search_model_versions(f"name='{name}' and run_id='{run_info['run_id']}'")
    except mlflow.exceptions.MlflowException:
        versions = []
    unfinished = [v for v in versions if v.tags.get(REGISTRATION) == INCOMPLETE]
    if unfinished:
        number = max(unfinished, key=lambda v: int(v.version)).version
        log.info("finishing the interrupted registration of %s version %s", name, number)
        for key, value in tags.items():
            client.set_model_version_tag(name, number, key, value)
        return number
    version = mlflow.register_model(
        run_info["model_uri"], name, tags={**tags, REGISTRATION: INCOMPLETE}
    )
    return version.version


def card_facts(
    name: str, version: str, run, tags: dict[str, str], metrics: dict, intended_use: str
) -> dict:
    """What :func:`deepvs30.model_card.model_card` shows, from the run and its metrics."""
    params = dict(run.data.params)
    prepared = run.data.tags.get("prepared")
    split_column = params.get("train.split_column", "split")
    return {
        "name": name,
        "version": version,
        "model_family": tags.get("model_family"),
        "data_version": tags.get("data_version"),
        "split": tags.get("split"),
        "training": training_summary(Path(prepared), split_column) if prepared else {},
        "metrics": metrics,
        "intended_use": intended_use,
        "lineage": {
            "git_commit": tags.get("git_commit"),
            "run_id": tags.get("run_id"),
            "params_hash": params_hash(params) if params else None,
            "parent_model_uri": tags.get("parent_model_uri"),
        },
    }


def training_summary(prepared_dir: Path, split_column: str = "split") -> dict:
    """Stations, records, regional clusters and networks of the prepared training split;
    empty when the prepared folder is gone (the card then says "unknown")."""
    import pandas as pd

    records_csv = prepared_dir / "records.csv"
    if not records_csv.is_file():
        return {}
    records = pd.read_csv(records_csv, usecols=lambda c: c in {"station", "cluster", split_column})
    if split_column not in records:
        return {}
    train = records[records[split_column] == "train"]
    stations = train["station"].astype(str)
    regions = sorted(train["cluster"].dropna().unique().tolist()) if "cluster" in train else []
    return {
        "n_stations": int(stations.nunique()),
        "n_records": len(train),
        "regions": [_region(r) for r in regions],
        "networks": sorted(stations.str.split(".").str[0].unique().tolist()),
    }


def _region(cluster: object) -> str:
    if isinstance(cluster, float) and cluster.is_integer():
        cluster = int(cluster)
    return f"cluster {cluster}"


def params_hash(params: dict[str, str]) -> str:
    """First 12 hex digits of the sha256 of the run's parameters (sorted key=value lines)."""
    text = "\n".join(f"{key}={params[key]}" for key in sorted(params))
    return hashlib.sha256(text.encode()).hexdigest()[:12]
