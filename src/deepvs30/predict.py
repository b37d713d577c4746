"""predict: Vs30 of stations from raw record files, with a registered (or local) model.

Files and folders are read by the same readers as ``ingest`` (any supported format, sibling
component files found automatically, P/S picked where the file gives none), each record becomes
one row of the served model's input frame (:data:`deepvs30.pyfunc.INPUT_COLUMNS`), and the model
bundle applies the training preprocessing and segmentation (:func:`deepvs30.pyfunc.predict_frame`,
the code ``mlflow models serve`` runs). A station's Vs30 is the median of its records' ln
predictions (:func:`deepvs30.metrics.station_predictions`, as in evaluation).

Output: per record and per station Vs30 (m/s), its 16–84% interval, NEHRP class and the number of
records used; every record or file that gave no prediction is listed with the reason. ``csv`` is
one table with a ``level`` column (record | station | skipped); ``json`` has the three lists.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepvs30.config import section
from deepvs30.errors import ReaderError

if TYPE_CHECKING:  # numpy and pandas are imported where used: `predict --help` needs neither
    import numpy as np
    import pandas as pd

log = logging.getLogger(__name__)

RECORD_COLUMNS = (
    "record_id", "station", "vs30_mps", "vs30_p16_mps", "vs30_p84_mps", "nehrp_class",
    "ln_vs30", "sigma_ln", "label_vs30_mps", "p_status", "s_status", "source_format",
    "source_file", "model",
)  # fmt: skip
STATION_COLUMNS = (
    "station", "n_records", "vs30_mps", "vs30_p16_mps", "vs30_p84_mps", "nehrp_class",
    "ln_vs30", "sigma_ln", "label_vs30_mps", "n_skipped",
)  # fmt: skip
SKIPPED_COLUMNS = ("source_file", "record_id", "station", "reason")


@dataclass
class Prediction:
    records: pd.DataFrame
    stations: pd.DataFrame
    skipped: pd.DataFrame
    model: str
    # with keep_inputs: the model input frame of every record read (INPUT_COLUMNS) and the
    # station coordinates (station_latitude_deg, station_longitude_deg), for the report
    inputs: pd.DataFrame | None = None


# --- raw files -> the model's input frame -----------------------------------------------


def read_inputs(
    paths: list[str | Path],
    fmt: str = "auto",
    stations=None,
    pick: bool = True,
    sensor: str = "surface",
    picking=None,
) -> tuple[list[tuple[dict, np.ndarray]], list[dict]]:
    """Every record under ``paths`` (archives read in place as ``ingest`` does, members named
    ``archive:member``) as canonical ``(metadata, waveform)`` pairs, and the files or records
    that could not be used, each with the reader's reason."""

    from deepvs30 import progress
    from deepvs30.ingest import batches, canonical_pairs, walk

    data_files, _, missing = walk(paths)
    skipped = [_skip(path, "no such file or folder") for path in missing]
    pairs: list[tuple[dict, np.ndarray]] = []
    bar = progress.bar(desc="read", unit="rec", show=len(data_files) > 1)
    for batch in batches(data_files, fmt):
        skipped += [_skip(name, reason) for name, reason in batch.rejected]
        for group in batch.groups:
            bar.update(1)
            try:
                found = canonical_pairs(batch.read(group, siblings=True), stations, pick, picking)
            except ReaderError as exc:
                skipped.append(_skip(exc.path, exc.reason))
                continue
            pairs += _sensor_filter(found, sensor, skipped)
    bar.close()
    from deepvs30.dataset import make_names_unique

    make_names_unique(pairs)  # record ids are keys of the output
    return pairs, skipped


def _sensor_filter(
    found: list[tuple[dict, np.ndarray]], sensor: str, skipped: list[dict]
) -> list[tuple[dict, np.ndarray]]:
    """The pairs of the chosen KiK-net sensor; the others go to ``skipped`` with the reason."""
    kept = []
    for meta, waveform in found:
        if sensor != "all" and meta.get("trace_sensor", sensor) != sensor:
            reason = f"{meta['trace_sensor']} sensor not used (ingest.sensor: {sensor})"
            skipped.append(_skip(meta["trace_source_file"], reason, meta))
            continue
        kept.append((meta, waveform))
    return kept


def _skip(source: str | Path, reason: str, meta: dict | None = None) -> dict:
    meta = meta or {}
    return {
        "source_file": str(source),
        "record_id": meta.get("trace_name", ""),
        "station": station_id(meta) if meta else "",
        "reason": reason,
    }


def station_id(meta: dict) -> str:
    return f"{meta['station_network_code']}.{meta['station_code']}"


def _seconds(sample: object, fs_hz: float) -> float | None:
    from deepvs30.dataset import arrival_sample_or_none

    value = arrival_sample_or_none(sample)
    return None if value is None else value / fs_hz


def input_frame(pairs: list[tuple[dict, np.ndarray]]) -> pd.DataFrame:
    """The served model's input: one row per record, components as float arrays (m/s²)."""
    import numpy as np
    import pandas as pd

    from deepvs30.dataset import finite_or_none

    rows = []
    for meta, waveform in pairs:
        fs_hz = float(meta["trace_sampling_rate_hz"])
        z, n, e = (np.asarray(c, dtype=np.float64) for c in waveform)
        rows.append({
            "record_id": meta["trace_name"],
            "station": station_id(meta),
            "sampling_rate_hz": fs_hz,
            "p_arrival_s": _seconds(meta.get("trace_p_arrival_sample"), fs_hz),
            "s_arrival_s": _seconds(meta.get("trace_s_arrival_sample"), fs_hz),
            "magnitude": finite_or_none(meta.get("source_magnitude")),
            "hyp_distance_km": finite_or_none(meta.get("path_hyp_distance_km")),
            "z": z, "n": n, "e": e,
        })  # fmt: skip
    from deepvs30.pyfunc import INPUT_COLUMNS

    return pd.DataFrame(rows, columns=list(INPUT_COLUMNS))


# --- prediction ---------------------------------------------------------------------------


def predict_inputs(bundle, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[dict]]:
    """Per-record predictions for the rows the model accepts; the others with the reason.
    Each row is checked alone, so one bad record does not cost the others their answer."""
    import pandas as pd

    from deepvs30.pyfunc import OUTPUT_COLUMNS, InputError, predict_frame, records_from_frame

    good, skipped = [], []
    for i in range(len(frame)):
        try:
            records_from_frame(frame.iloc[[i]])
            good.append(i)
        except InputError as exc:
            row = frame.iloc[i]
            reason = str(exc).removeprefix("row 0: ")
            skipped.append({"record_id": row["record_id"], "station": row["station"],
                            "reason": reason})  # fmt: skip
    if not good:
        return pd.DataFrame(columns=list(OUTPUT_COLUMNS)), skipped
    out = predict_frame(bundle, frame.iloc[good].reset_index(drop=True))
    return out, skipped


def predict_paths(
    bundle,
    paths: list[str | Path],
    fmt: str = "auto",
    stations=None,
    pick: bool = True,
    sensor: str = "surface",
    model: str = "",
    fallback=None,
    fallback_model: str = "",
    keep_inputs: bool = False,
    picking=None,
) -> Prediction:
    """Predictions for every record under ``paths``. Records the model skips for want of P/S
    arrivals or of magnitude and distance go to ``fallback`` (a model that reads no P/S
    information) when one is given, else to the bundle's own :attr:`ModelBundle.fallback`;
    the ``model`` column says which model answered each record (:func:`fallback_name`).
    ``keep_inputs`` keeps the input frame (waveforms, arrivals, coordinates) in the result,
    for the HTML report. ``picking``: the picker's settings (params.yaml ingest.picking)."""
    import numpy as np
    import pandas as pd

    pairs, skipped = read_inputs(paths, fmt, stations, pick, sensor, picking)
    frame = input_frame(pairs)
    if fallback is not None:
        bundle = with_fallback(bundle, fallback, fallback_model)
    out, rejected = predict_inputs(bundle, frame)
    answered_by = fallback_name(model, fallback_model if fallback is not None else "")
    out = out.assign(model=np.where(out["answered_by"] == "fallback", answered_by, model))
    meta = _record_meta(pairs)
    for row in rejected:
        skipped.append({"source_file": meta.loc[row["record_id"], "source_file"], **row})
    out = out.merge(meta, left_on="record_id", right_index=True, how="left")
    used = out[out["skipped"] == ""].copy()
    for _, row in out[out["skipped"] != ""].iterrows():
        reason = row["skipped"]
        if row["pick_note"] and "P/S" in reason:
            reason = f"{reason}; picker: {row['pick_note']}"
        skipped.append({"source_file": row["source_file"], "record_id": row["record_id"],
                        "station": row["station"], "reason": reason})  # fmt: skip
    skipped_df = pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS))
    records = used.reindex(columns=list(RECORD_COLUMNS)).reset_index(drop=True)
    inputs = frame.assign(**_coordinates(pairs)) if keep_inputs else None
    return Prediction(records, station_table(records, skipped_df), skipped_df, model, inputs)


def _coordinates(pairs: list[tuple[dict, np.ndarray]]) -> dict[str, list[float]]:
    """Station latitude and longitude (degrees, NaN where unknown) of each record."""
    import pandas as pd

    return {
        column: [float(pd.to_numeric(m.get(column), errors="coerce")) for m, _ in pairs]
        for column in ("station_latitude_deg", "station_longitude_deg")
    }


def fallback_name(model: str, fallback_model: str = "") -> str:
    """The ``model`` column of rows a fallback answered: --fallback-model's URI, or the
    bundle's own fallback as ``MODEL (fallback)``."""
    return fallback_model or f"{model} (fallback)"


def with_fallback(bundle, fallback, fallback_model: str):
    """``bundle`` with ``fallback`` (:attr:`ModelBundle.fallback`, in place of its own) for
    the records it skips for want of P/S arrivals or of magnitude and distance; a fallback
    that itself reads P/S is refused (it would skip the same records)."""
    from dataclasses import replace

    if fallback.features.ps_channel or fallback.features.sp_scalar:
        from deepvs30.errors import ConfigError

        raise ConfigError(f"fallback model {fallback_model} reads P/S information itself")
    return replace(bundle, fallback=fallback)


def _record_meta(pairs: list[tuple[dict, np.ndarray]]) -> pd.DataFrame:
    import pandas as pd

    rows = [
        {
            "record_id": m["trace_name"],
            "label_vs30_mps": pd.to_numeric(m.get("station_vs30_mps"), errors="coerce"),
            "p_status": m.get("trace_p_status", ""),
            "s_status": m.get("trace_s_status", ""),
            "source_format": m.get("trace_source_format", ""),
            "source_file": m.get("trace_source_file", ""),
            "pick_note": m.get("trace_pick_note", ""),
        }
        for m, _ in pairs
    ]
    columns = ["record_id", "label_vs30_mps", "p_status", "s_status", "source_format",
               "source_file", "pick_note"]  # fmt: skip
    frame = pd.DataFrame(rows, columns=columns)
    return frame.drop_duplicates("record_id").set_index("record_id")


def station_table(records: pd.DataFrame, skipped: pd.DataFrame) -> pd.DataFrame:
    """Per station: median of ln predictions (metrics.station_predictions), its interval,
    class, records used and skipped. Stations with no usable record are listed with 0."""
    import numpy as np
    import pandas as pd

    from deepvs30.metrics import nehrp_class, station_predictions

    frame = records.rename(columns={"ln_vs30": "ln_pred"}).assign(
        vs30_mps=records["label_vs30_mps"]
    )
    stations = station_predictions(frame[["station", "ln_pred", "sigma_ln", "vs30_mps"]])
    mu, sd = stations["ln_pred"], stations["sigma_ln"]
    table = pd.DataFrame({
        "station": stations["station"],
        "n_records": stations["n_records"].astype(int),
        "vs30_mps": np.exp(mu),
        "vs30_p16_mps": np.exp(mu - sd),
        "vs30_p84_mps": np.exp(mu + sd),
        "nehrp_class": nehrp_class(np.exp(mu)) if len(stations) else [],
        "ln_vs30": mu,
        "sigma_ln": sd,
        "label_vs30_mps": stations["vs30_mps"],
    })  # fmt: skip
    n_skipped = skipped[skipped["station"] != ""].groupby("station").size()
    missing = sorted(set(n_skipped.index) - set(table["station"]))
    if missing:
        empty = pd.DataFrame({"station": missing, "n_records": 0})
        table = pd.concat([table, empty], ignore_index=True) if len(table) else empty
    table["n_skipped"] = table["station"].map(n_skipped).fillna(0).astype(int)
    return table.reindex(columns=list(STATION_COLUMNS)).sort_values("station", ignore_index=True)


# --- output -------------------------------------------------------------------------------


def to_csv(result: Prediction) -> str:
    import pandas as pd

    parts = [
        result.records.assign(level="record"),
        result.stations.assign(level="station"),
        result.skipped.assign(level="skipped"),
    ]
    columns = ["level", *dict.fromkeys([*STATION_COLUMNS, *RECORD_COLUMNS, "reason"])]
    parts = [p for p in parts if len(p)]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return table.reindex(columns=columns).to_csv(index=False, float_format="%.6g")


def to_json(result: Prediction) -> str:

    def rows(frame: pd.DataFrame) -> list[dict]:
        return json.loads(frame.to_json(orient="records", double_precision=15))

    return json.dumps(
        {
            "model": result.model,
            "records": rows(result.records),
            "stations": rows(result.stations),
            "skipped": rows(result.skipped),
        },
        indent=1,
    )


def summary_text(result: Prediction) -> str:
    import pandas as pd

    lines = [f"model {result.model}: {len(result.records)} record(s) used, "
             f"{len(result.skipped)} skipped, {len(result.stations)} station(s)"]  # fmt: skip
    for row in result.stations.itertuples(index=False):
        if row.n_records:
            label = "" if pd.isna(row.label_vs30_mps) else f"  (label {row.label_vs30_mps:.0f})"
            lines.append(
                f"  {row.station:14s} Vs30 {row.vs30_mps:6.0f} m/s  [{row.vs30_p16_mps:.0f}-"
                f"{row.vs30_p84_mps:.0f}]  class {row.nehrp_class}  n={row.n_records}{label}"
            )
        else:
            lines.append(f"  {row.station:14s} no usable record ({row.n_skipped} skipped)")
    for row in result.skipped.itertuples(index=False):
        lines.append(f"  skipped {row.record_id or row.source_file}: {row.reason}")
    return "\n".join(lines)


# --- the command --------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from deepvs30.readers import FORMATS

    parser.add_argument("paths", nargs="+", metavar="PATH", help="record files or folders")
    parser.add_argument(
        "--model", help="model URI or bundle folder (default: models:/<registered>@champion)"
    )
    parser.add_argument(
        "--stations", metavar="CSV",
        help="station table network,station,lat,lon,vs30_mps,vs30_method (labels, coordinates)",
    )  # fmt: skip
    parser.add_argument("--format", choices=["csv", "json"], default="csv", help="output format")
    parser.add_argument(
        "--input-format", default="auto", choices=["auto", *FORMATS], help="force one reader"
    )
    parser.add_argument("--out", help="write the table here (default: stdout)")
    parser.add_argument("--no-pick", action="store_true", help="do not pick missing P/S")
    parser.add_argument(
        "--fallback-model", metavar="URI",
        help="model without P/S inputs for the records whose arrivals cannot be had "
        "(e.g. models:/deepvs30-real@champion); default: such records are skipped",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="cpu", help="auto | cpu | cuda | cuda:N | mps (default: cpu)"
    )
    parser.add_argument(
        "--report", metavar="DIR",
        help="also write a static HTML report here (index.html, one page per station)",
    )  # fmt: skip


def run(args: argparse.Namespace, params: dict) -> int:
    from deepvs30.ingest import IngestParams, build_station_table
    from deepvs30.pyfunc import load_bundle
    from deepvs30.tracking import MlflowParams, configure

    mlflow_params = section(params, "mlflow", MlflowParams)
    ingest = section(params, "ingest", IngestParams)
    model = args.model or f"models:/{mlflow_params.registered_model}@champion"
    if not Path(model).is_dir():
        configure(mlflow_params)
    from deepvs30.device import resolve

    device = resolve(args.device, "--device")
    bundle = _load(load_bundle, model).to(device)
    stations = _stations(build_station_table, ingest, args.stations)
    fallback = _load(load_bundle, args.fallback_model).to(device) if args.fallback_model else None
    result = predict_paths(
        bundle, args.paths, args.input_format, stations, ingest.pick and not args.no_pick,
        ingest.sensor, model, fallback, args.fallback_model or "", keep_inputs=bool(args.report),
        picking=ingest.picking,
    )  # fmt: skip
    text = to_json(result) if args.format == "json" else to_csv(result)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(summary_text(result))
    else:
        sys.stdout.write(text)
    if args.report:
        from deepvs30.prepare import PrepareParams
        from deepvs30.report import write_report

        bundles = {model: bundle}
        if fallback or bundle.fallback:
            bundles[fallback_name(model, args.fallback_model or "")] = fallback or bundle.fallback
        hv = section(params, "prepare", PrepareParams).hv
        report = write_report(result, bundles, args.report, hv)
        if args.out and Path(args.out).resolve().is_relative_to(report.resolve()):
            Path(args.out).write_text(text)  # the report replaced its folder, --out with it
        print(f"report: {report / 'index.html'}", file=sys.stderr)
    return 0 if len(result.records) else 1


def _load(load_bundle, model: str):
    from deepvs30.errors import DeepVs30Error

    try:
        return load_bundle(model)
    except (*_load_errors(model), OSError, KeyError) as exc:
        raise DeepVs30Error(f"cannot load model {model}: {exc}") from exc


def _load_errors(model: str) -> tuple[type[Exception], ...]:
    """MLflow's error type where MLflow loads the model; a bundle folder is read without
    MLflow, and importing it would cost seconds."""
    if Path(model).is_dir():
        return ()
    from mlflow.exceptions import MlflowException

    return (MlflowException,)


def _stations(build_station_table, ingest, stations_csv: str | None):
    """Station tables for labels; a missing built-in table is a warning, a bad --stations not."""
    try:
        return build_station_table(ingest, stations_csv)
    except ReaderError as exc:
        if stations_csv and exc.path == str(stations_csv):
            raise
        log.warning("station tables from params.yaml not used: %s", exc)
        from dataclasses import replace

        bare = replace(ingest, afad_station_list="", ngaw2_flatfile="")
        return build_station_table(bare, stations_csv)
