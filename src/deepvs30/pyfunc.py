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

from deepvs30.dataset import finite_or_none
from deepvs30.inference import ModelBundle

INPUT_COLUMNS = (
    "record_id",
    "station",
    "sampling_rate_hz",
    "p_arrival_s",
    "s_arrival_s",
    "magnitude",
    "hyp_distance_km",
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
    "answered_by",  # model | fallback (the bundle's own, for records it cannot read)
)
BUNDLE_ARTIFACT = "bundle"
# Records the model must not answer for (skipped with the reason): shorter than the bundle's
# min_record_s (prepare.min_record_s of its training data), or sampled far above any
# strong-motion instrument.
MAX_SAMPLING_RATE_HZ = 10_000.0


class InputError(ValueError):
    """A request the model cannot answer (wrong columns, shapes, NaN, missing rate)."""


def records_from_frame(frame: pd.DataFrame) -> list[dict]:
    """Input rows as bundle records; InputError (naming the row) for anything the model
    must not guess about: missing columns, no rows, non-numeric, non-1-D, empty or non-finite
    components, components of different lengths, a missing or non-positive sampling rate."""
    missing = [c for c in ("sampling_rate_hz", "z", "n", "e") if c not in frame]
    if missing:
        raise InputError(f"input lacks columns {missing}; expected {list(INPUT_COLUMNS)}")
    if len(frame) == 0:
        raise InputError("input has no rows")
    records = []
    for i, row in frame.reset_index(drop=True).iterrows():
        comps = [_component(i, c, row[c]) for c in ("z", "n", "e")]
        if len({len(c) for c in comps}) != 1:
            sizes = ", ".join(f"{c} {len(a)}" for c, a in zip("zne", comps, strict=True))
            raise InputError(f"row {i}: components z, n, e differ in length ({sizes})")
        records.append(
            {
                "waveform_mps2": np.stack(comps),
                "sampling_rate_hz": _sampling_rate(i, row["sampling_rate_hz"]),
                "p_arrival_s": finite_or_none(row.get("p_arrival_s")),
                "s_arrival_s": finite_or_none(row.get("s_arrival_s")),
                "magnitude": finite_or_none(row.get("magnitude")),
                "hyp_distance_km": finite_or_none(row.get("hyp_distance_km")),
            }
        )
    return records


def _component(i: int, name: str, value: object) -> np.ndarray:
    try:
        samples = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"row {i}: component {name} is not an array of numbers") from exc
    if samples.ndim != 1:
        raise InputError(f"row {i}: component {name} has shape {samples.shape}, expected (n,)")
    if samples.size == 0:
        raise InputError(f"row {i}: component {name} is empty")
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise InputError(f"row {i}: component {name} has {bad} non-finite sample(s) (NaN/inf)")
    return samples


def _sampling_rate(i: int, value: object) -> float:
    try:
        fs = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        fs = float("nan")
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(f"row {i}: missing or invalid sampling_rate_hz {value!r}")
    return fs


def unusable_reason(bundle: ModelBundle, record: dict) -> str:
    """Why the model must not answer for a well-formed record ("" = it may): shorter than the
    shortest training record, or sampled too slowly to hold the model's frequency band."""
    fs_hz = record["sampling_rate_hz"]
    duration_s = record["waveform_mps2"].shape[1] / fs_hz
    if duration_s < bundle.min_record_s:
        return f"record is {duration_s:.3g} s long, shorter than {bundle.min_record_s:g} s"
    if fs_hz / 2 < bundle.preprocess.freqmax_hz:
        return (
            f"sampling rate {fs_hz:g} Hz: Nyquist below the model's "
            f"{bundle.preprocess.freqmax_hz:g} Hz band edge"
        )
    if fs_hz > MAX_SAMPLING_RATE_HZ:
        return f"sampling rate {fs_hz:g} Hz above {MAX_SAMPLING_RATE_HZ:g} Hz"
    return ""


def predict_frame(bundle: ModelBundle, frame: pd.DataFrame) -> pd.DataFrame:
    from deepvs30.metrics import nehrp_class

    records = records_from_frame(frame)
    reasons = [unusable_reason(bundle, rec) for rec in records]
    usable = [rec for rec, reason in zip(records, reasons, strict=True) if not reason]
    predicted = iter(bundle.predict_records(usable))
    results = [{"skipped": r} if r else next(predicted) for r in reasons]
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
                    "answered_by": "model",
                }
            )
        rows.append(out)
    return _fall_back(bundle, frame, pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS)))


def _fall_back(bundle: ModelBundle, frame: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """The rows skipped for want of P/S arrivals or of magnitude and distance, answered by
    :attr:`ModelBundle.fallback` (with its own checks) where the bundle carries one."""
    from deepvs30.segment import needs_other_inputs

    if bundle.fallback is None:
        return out
    retry = np.flatnonzero(out["skipped"].fillna("").map(needs_other_inputs).to_numpy())
    if not len(retry):
        return out
    answered = predict_frame(bundle.fallback, frame.reset_index(drop=True).iloc[retry])
    ok = (answered["skipped"] == "").to_numpy()
    rows = out.index[retry[ok]]
    fixed = answered[ok].assign(answered_by="fallback").set_axis(rows)
    return pd.concat([out.drop(index=rows), fixed]).sort_index()


def _pyfunc_class() -> type:
    """The pyfunc class, built on first use: ``import mlflow`` costs seconds, and
    ``deepvs30 predict`` from a bundle folder needs none of it."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    from mlflow.pyfunc import PythonModel

    class Vs30PyFunc(PythonModel):
        def load_context(self, context) -> None:
            self.bundle = ModelBundle.load(context.artifacts[BUNDLE_ARTIFACT])

        def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
            try:
                if not isinstance(model_input, pd.DataFrame):
                    model_input = pd.DataFrame(model_input)
                return predict_frame(self.bundle, model_input)
            except InputError as exc:  # the scoring server answers 400 with this message
                raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from exc

    Vs30PyFunc.__module__, Vs30PyFunc.__qualname__ = __name__, "Vs30PyFunc"
    return Vs30PyFunc


def __getattr__(name: str) -> type:
    """``Vs30PyFunc`` is made on first access (PEP 562), then kept as a module attribute."""
    if name == "Vs30PyFunc":
        globals()[name] = _pyfunc_class()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
            ColSpec("double", "magnitude", required=False),
            ColSpec("double", "hyp_distance_km", required=False),
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
            ColSpec("string", "answered_by", required=False),
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
    import mlflow

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
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    return ModelBundle.load(local / _bundle_path(local))


def _bundle_path(model_dir: Path) -> str:
    """Where MLflow put the bundle inside a downloaded model: MLmodel names it (MLflow keeps
    the logged folder's own name, e.g. ``artifacts/current``)."""
    import yaml

    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    artifacts = mlmodel["flavors"]["python_function"].get("artifacts") or {}
    return artifacts[BUNDLE_ARTIFACT]["path"]
