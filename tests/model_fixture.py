"""Trained, logged and registerable tiny models for the promote / predict / serve tests.

``make_models(tmp, data)`` prepares the tiny dataset, trains one small cnn_lstm for two epochs
(10 s windows) in a throwaway SQLite MLflow store, and logs a second, deliberately biased copy of
it (the normaliser's ln Vs30 mean shifted by ln 2.5, so every prediction is 2.5x too high): a
clearly worse model with the same spread. Each is evaluated on the test split; ``register``
puts either under any registered-model name, so tests can build their own registry histories.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from deepvs30.evaluate import evaluate, write_outputs
from deepvs30.inference import ModelBundle
from deepvs30.prepare import PrepareParams, prepare
from deepvs30.segment import FeatureParams
from deepvs30.tracking import MlflowParams
from deepvs30.train import ModelParams, TrainParams, train_and_log

REPO = Path(__file__).resolve().parents[1]
BIAS_LN = math.log(2.5)
FEATURES = FeatureParams(window_s=10.0)
MODEL = ModelParams(
    "cnn_lstm", {"conv_channels": 8, "n_conv_blocks": 3, "lstm_hidden": 16, "head_hidden": 16}
)


@dataclass
class TinyModels:
    root: Path
    data: Path
    prepared: Path
    mlflow: MlflowParams
    train: TrainParams
    good: Path  # bundle folders with run.json and metrics.json
    bad: Path

    def params_file(self, registered_model: str = "deepvs30", **sections: dict) -> Path:
        """A params.yaml for the CLI: the repository's, pointed at this store and data."""
        params = yaml.safe_load((REPO / "params.yaml").read_text())
        params["data"]["path"] = str(self.data)
        params["prepare"]["out"] = str(self.prepared)
        params["features"] = FEATURES.to_dict()
        params["model"] = dataclasses.asdict(MODEL)
        params["train"] = dataclasses.asdict(self.train)
        params["evaluate"]["out"] = str(self.root / "reports")
        params["mlflow"] = {**dataclasses.asdict(self.mlflow), "registered_model": registered_model}
        for name, values in sections.items():
            params[name] = {**params.get(name, {}), **values}
        path = self.root / f"params_{registered_model}.yaml"
        path.write_text(yaml.safe_dump(params))
        return path

    def register(self, which: str, name: str = "deepvs30") -> dict:
        from deepvs30.register import register_model

        model_dir = self.good if which == "good" else self.bad
        params = dataclasses.replace(self.mlflow, registered_model=name)
        return register_model(model_dir, model_dir / "metrics.json", params, extra_tags={})


def unset_tracking_env() -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


def make_models(root: Path, data: Path) -> TinyModels:
    unset_tracking_env()
    root.mkdir(parents=True, exist_ok=True)
    prepared = root / "prepared"
    prepare(data, prepared, PrepareParams(out=str(prepared)))
    mlflow_params = MlflowParams(
        experiment="tiny",
        tracking_uri=f"sqlite:///{root}/mlflow.db",
        artifact_root=str(root / "mlruns"),
    )
    train = TrainParams(
        epochs=2,
        batch_size=16,
        num_threads=1,
        patience=5,
        out=str(root / "models/good"),
        checkpoint=str(root / "models/checkpoint.pt"),
    )
    good = root / "models/good"
    train_and_log(prepared, FEATURES, MODEL, train, mlflow_params, data, good, run_name="good")
    _evaluate(good, prepared, train)
    bad = _log_biased_copy(good, root / "models/bad", mlflow_params, data)
    _evaluate(bad, prepared, train)
    return TinyModels(root, data, prepared, mlflow_params, train, good, bad)


def _evaluate(model_dir: Path, prepared: Path, train: TrainParams) -> None:
    result = evaluate(ModelBundle.load(model_dir), prepared, train, "test")
    write_outputs(result, model_dir / "evaluation", model_dir / "metrics.json")


def _log_biased_copy(good: Path, out: Path, mlflow_params: MlflowParams, data: Path) -> Path:
    import mlflow

    from deepvs30 import tracking
    from deepvs30.pyfunc import log_bundle

    bundle = ModelBundle.load(good)
    bundle.normaliser = dataclasses.replace(
        bundle.normaliser, target_mean=bundle.normaliser.target_mean + BIAS_LN
    )
    bundle.save(out)
    tracking.configure(mlflow_params)
    with mlflow.start_run(run_name="biased") as run:
        mlflow.set_tags(
            {
                "data_version": tracking.data_version(data),
                "git_commit": "test",
                "model_family": MODEL.name,
            }
        )
        info = log_bundle(bundle, out)
    (out / "run.json").write_text(
        json.dumps({"run_id": run.info.run_id, "model_uri": info.model_uri})
    )
    return out


_SHARED: dict[Path, TinyModels] = {}


def shared_models(tmp_path_factory, data: Path) -> TinyModels:
    """One set of tiny models per test session (training costs seconds, not nothing)."""
    if data not in _SHARED:
        _SHARED[data] = make_models(tmp_path_factory.mktemp("tiny_models"), data)
    return _SHARED[data]


def served_champion(models: TinyModels, name: str = "served") -> str:
    """``good`` registered (once) under ``name``, where it is the champion; its URI."""
    import mlflow

    mlflow.set_tracking_uri(models.mlflow.tracking_uri)
    try:
        mlflow.MlflowClient().get_model_version_by_alias(name, "champion")
    except mlflow.exceptions.MlflowException:
        models.register("good", name)
    return f"models:/{name}@champion"
