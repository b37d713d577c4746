"""The registered model: an MLflow pyfunc over :class:`~deepvs30.inference.ModelBundle`.

It is logged as "models from code" (this file is the model's code, the bundle folder its
artifact), so loading it unpickles nothing: the weights are a state dict read with
``weights_only=True``. Input: a DataFrame, one row per 3-component record (the columns of
:data:`INPUT_COLUMNS`; ``z``, ``n``, ``e`` are arrays of acceleration in m/s²). Output: one row
per record with ln Vs30, its σ, Vs30 (m/s) and its 16–84% interval, the NEHRP class, or the
reason the record was skipped. ``mlflow models serve`` answers the same over REST.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepvs30.inference import ModelBundle

try:
    import mlflow
    from mlflow.pyfunc import PythonModel
except ImportError:  # pragma: no cover - mlflow is a dependency
    PythonModel = object  # type: ignore[assignment,misc]

INPUT_COLUMNS = (
    "record_id",
    "station",
    "sampling_rate_hz",
    "p_arrival_s",
    "s_arrival_s",
    "z",
    "n",
    "e",
)
OUTPUT_COLUMNS = (
    "record_id",
    "station",
    "ln_vs30",
    "sigma_ln",
    "vs30_mps",
    "vs30_p16_mps",
    "vs30_p84_mps",
    "nehrp_class",
    "skipped",
)
BUNDLE_ARTIFACT = "bundle"


class InputError(ValueError):
    """A request the model cannot answer (wrong columns, shapes, NaN, missing rate)."""


def records_from_frame(frame: pd.DataFrame) -> list[dict]:
    missing = [c for c in ("sampling_rate_hz", "z", "n", "e") if c not in frame]
    if missing:
        raise InputError(f"input lacks columns {missing}; expected {list(INPUT_COLUMNS)}")
    records = []
    for i, row in frame.reset_index(drop=True).iterrows():
        comps = [np.asarray(row[c], dtype=np.float64).ravel() for c in ("z", "n", "e")]
        if len({len(c) for c in comps}) != 1:
            raise InputError(f"row {i}: components z, n, e differ in length")
        fs = row["sampling_rate_hz"]
        if fs is None or not np.isfinite(float(fs)) or float(fs) <= 0:
            raise InputError(f"row {i}: missing or invalid sampling_rate_hz {fs!r}")
        records.append(
            {
                "waveform_mps2": np.stack(comps),
                "sampling_rate_hz": float(fs),
                "p_arrival_s": _optional(row.get("p_arrival_s")),
                "s_arrival_s": _optional(row.get("s_arrival_s")),
            }
        )
    return records


def _optional(value: object) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) else None


def predict_frame(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    from deepvs30.metrics import nehrp_class

    results = bundle.predict_records(records_from_frame(frame))
    rows = []
    for (_, row), res in zip(frame.reset_index(drop=True).iterrows(), results, strict=True):
        out = {"record_id": row.get("record_id", ""), "station": row.get("station", "")}
        if "skipped" in res:
            out.update({"skipped": res["skipped"]})
        else:
            mu, sd = res["ln_vs30"], res["sigma_ln"]
            out.update(
                {
                    "ln_vs30": mu,
                    "sigma_ln": sd,
                    "vs30_mps": float(np.exp(mu)),
                    "vs30_p16_mps": float(np.exp(mu - sd)),
                    "vs30_p84_mps": float(np.exp(mu + sd)),
                    "nehrp_class": str(nehrp_class(np.exp(mu))[0]),
                    "skipped": "",
                }
            )
        rows.append(out)
    return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


class Vs30PyFunc(PythonModel):
    def load_context(self, context) -> None:
        self.bundle = ModelBundle.load(context.artifacts[BUNDLE_ARTIFACT])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        return predict_frame(self.bundle, model_input)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "record_id", required=False),
            ColSpec("string", "station", required=False),
            ColSpec("double", "sampling_rate_hz"),
            ColSpec("double", "p_arrival_s", required=False),
            ColSpec("double", "s_arrival_s", required=False),
            ColSpec(Array("double"), "z"),
            ColSpec(Array("double"), "n"),
            ColSpec(Array("double"), "e"),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "record_id"),
            ColSpec("string", "station"),
            ColSpec("double", "ln_vs30"),
            ColSpec("double", "sigma_ln"),
            ColSpec("double", "vs30_mps"),
            ColSpec("double", "vs30_p16_mps"),
            ColSpec("double", "vs30_p84_mps"),
            ColSpec("string", "nehrp_class"),
            ColSpec("string", "skipped"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def example_input(fs_hz: float = 100.0, seconds: float = 30.0) -> pd.DataFrame:
    """A small self-made input example (a decaying noise burst), stored with the model."""
    rng = np.random.default_rng(0)
    n = int(fs_hz * seconds)
    t = np.arange(n) / fs_hz
    envelope = np.where(t > 5, np.exp(-(t - 5) / 4.0), 0.0)
    comps = [(0.01 * envelope * rng.standard_normal(n)).round(6).tolist() for _ in range(3)]
    return pd.DataFrame(
        [
            {
                "record_id": "example",
                "station": "XX.EXMPL",
                "sampling_rate_hz": fs_hz,
                "p_arrival_s": 5.0,
                "s_arrival_s": 8.0,
                "z": comps[0],
                "n": comps[1],
                "e": comps[2],
            }
        ]
    )


def log_bundle(bundle: ModelBundle, bundle_dir: str | Path, name: str = "model"):
    """Log the bundle as a pyfunc (models from code) in the active MLflow run."""
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(Path(__file__).with_name("pyfunc_model.py")),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=signature(),
        input_example=example_input(bundle.fs_hz),
        pip_requirements=[f"deepvs30=={_version()}", "torch==2.13.0"],
    )


def _version() -> str:
    from deepvs30 import __version__

    return __version__


def load_bundle(uri: str) -> ModelBundle:
    """A bundle from a folder, or from any MLflow model URI (runs:/, models:/NAME@ALIAS)."""
    path = Path(uri)
    if path.is_dir():
        return ModelBundle.load(path)
    local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    return ModelBundle.load(Path(local) / "artifacts" / BUNDLE_ARTIFACT)
