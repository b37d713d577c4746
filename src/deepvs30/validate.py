"""``deepvs30 validate``: check a canonical dataset with a Great Expectations suite.

The suite runs over one table: the metadata joined with per-record waveform statistics
(:func:`deepvs30.trace_stats.trace_statistics`, streamed one record at a time) and a few
derived check columns (P/S position in the record, per-station Vs30 spread).

The report folder (default ``reports/validation/``) holds ``summary.json``,
``failures.csv`` (one row per failing record and expectation), ``trace_stats.csv`` and the
GX Data Docs site under ``data_docs/``. It is built under a temporary name and renamed, so
a failing run still leaves one consistent report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepvs30.config import section
from deepvs30.dataset import VS30_METHODS, CanonicalDataset, record_ids, station_key
from deepvs30.errors import ConfigError, ValidationFailed
from deepvs30.trace_stats import trace_statistics

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

log = logging.getLogger(__name__)

RECORD_COLUMN = "record_name"  # stable record name (record_ids), reported in every failure
STATION_COLUMN = "station"  # "NET.STA" (station_key)
SUITE_NAME = "deepvs30_dataset"
DOCS_SITE = "deepvs30_validation"
DOCS_DIR = "data_docs"
SUMMARY_FILE = "summary.json"
FAILURES_FILE = "failures.csv"
STATS_FILE = "trace_stats.csv"


@dataclass(frozen=True)
class ValidateParams:
    """The ``validate:`` section of params.yaml."""

    report_dir: str = "reports/validation"
    sampling_rates_hz: list[float] = field(default_factory=lambda: [50.0, 100.0, 200.0, 250.0])
    min_duration_s: float = 10.0
    max_duration_s: float = 1200.0
    pga_min_mps2: float = 1.0e-6
    pga_max_mps2: float = 50.0
    vs30_min_mps: float = 80.0
    vs30_max_mps: float = 3000.0
    require_vs30: bool = True
    station_vs30_tolerance_mps: float = 1.0
    flat_std_min_mps2: float = 1.0e-8
    flat_run_max_s: float = 5.0
    clip_rel_tol: float = 1.0e-6
    clip_max_peak_samples: int = 3
    component_length_tolerance_samples: int = 0
    magnitude_range: list[float] = field(default_factory=lambda: [-2.0, 10.0])
    hyp_distance_max_km: float = 3000.0
    source_depth_range_km: list[float] = field(default_factory=lambda: [-10.0, 800.0])
    max_records_listed: int = 20
    data_docs: bool = True


@dataclass
class ExpectationOutcome:
    """The result of one expectation: which records failed it, and with what values."""

    name: str
    expectation_type: str
    description: str
    columns: list[str]
    success: bool
    n_checked: int
    n_failing: int
    failing_records: list[str]
    error: str | None = None


@dataclass
class ValidationReport:
    """Everything a validation run found; :meth:`write` turns it into the report folder."""

    dataset_path: str
    n_records: int
    success: bool
    outcomes: list[ExpectationOutcome]
    failures: pd.DataFrame  # trace_name, station, expectation, observed
    trace_stats: pd.DataFrame
    elapsed_s: float = 0.0

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def failed_records(self) -> dict[str, list[str]]:
        """Record name → names of the expectations it failed (for quarantine at ingest)."""
        grouped = self.failures.groupby("trace_name", sort=True)["expectation"]
        return {name: sorted(set(exps)) for name, exps in grouped}

    def summary(self, max_records: int = 20) -> dict[str, Any]:
        expectations = []
        for outcome in self.outcomes:
            entry = asdict(outcome)
            entry["failing_records"] = outcome.failing_records[:max_records]
            entry["failing_records_truncated"] = len(outcome.failing_records) > max_records
            expectations.append(entry)
        return {
            "success": self.success,
            "dataset": self.dataset_path,
            "n_records": self.n_records,
            "n_expectations": len(self.outcomes),
            "n_failed_expectations": len(self.failed),
            "n_failing_records": int(self.failures["trace_name"].nunique()),
            "elapsed_s": round(self.elapsed_s, 3),
            "expectations": expectations,
        }

    def message(self, max_records: int = 5) -> str:
        """One readable line naming the failed expectations and their records."""
        if self.success:
            return f"{self.dataset_path}: all {len(self.outcomes)} expectations passed"
        parts = []
        for outcome in self.failed:
            names = outcome.failing_records[:max_records]
            more = len(outcome.failing_records) - len(names)
            listed = ", ".join(names) + (f" (+{more} more)" if more > 0 else "")
            detail = outcome.error or f"{outcome.n_failing} record(s): {listed}"
            parts.append(f"{outcome.name} [{detail}]")
        return (
            f"{self.dataset_path}: {len(self.failed)} of {len(self.outcomes)} expectations "
            f"failed on {self.failures['trace_name'].nunique()} of {self.n_records} records: "
            + "; ".join(parts)
        )


# --------------------------------------------------------------------------- the table


def validation_frame(metadata: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Metadata + statistics + derived check columns, one row per record (row order kept)."""
    frame = metadata.reset_index(drop=True).copy()
    stat_columns = [c for c in stats.columns if c != "trace_name"]
    for column in stat_columns:
        frame[column] = stats[column].to_numpy()
    frame[RECORD_COLUMN] = record_ids(metadata).to_numpy()
    frame[STATION_COLUMN] = station_key(metadata).to_numpy()
    n_samples = frame["trace_n_samples"].astype(float)
    for phase in ("p", "s"):
        sample = pd.to_numeric(frame[f"trace_{phase}_arrival_sample"], errors="coerce")
        frame[f"trace_{phase}_arrival_fraction"] = sample / n_samples
    vs30 = pd.to_numeric(frame["station_vs30_mps"], errors="coerce")
    by_station = vs30.groupby(frame[STATION_COLUMN])
    frame["station_vs30_spread_mps"] = by_station.transform("max") - by_station.transform("min")
    return frame


# --------------------------------------------------------------------------- the suite


def expectations(params: ValidateParams) -> list[Any]:
    """The suite, each expectation tagged with a short stable name in ``meta["check"]``."""
    import great_expectations as gx

    E = gx.expectations
    p = params

    def tag(check: str, description: str, expectation: Any) -> Any:
        expectation.meta = {"check": check}
        expectation.description = description
        return expectation

    between = E.ExpectColumnValuesToBeBetween
    not_null = E.ExpectColumnValuesToNotBeNull
    suite = [
        tag("trace_name_unique", "Record names are unique",
            E.ExpectColumnValuesToBeUnique(column=RECORD_COLUMN)),
        tag("station_present", "Every record names its station (network and code)",
            E.ExpectColumnValuesToNotBeNull(column="station_code")),
        tag("sampling_rate_allowed", f"Sampling rate in {p.sampling_rates_hz} Hz",
            E.ExpectColumnValuesToBeInSet(
                column="trace_sampling_rate_hz", value_set=list(p.sampling_rates_hz))),
        tag("sampling_rate_present", "Sampling rate is given",
            not_null(column="trace_sampling_rate_hz")),
        tag("duration_in_range", f"Record length {p.min_duration_s}-{p.max_duration_s} s",
            between(column="trace_duration_s", min_value=p.min_duration_s,
                    max_value=p.max_duration_s)),
        tag("components_same_length", "Z, N and E end at the same sample",
            between(column="trace_component_length_spread_samples", min_value=0,
                    max_value=p.component_length_tolerance_samples)),
        tag("all_samples_finite", "No NaN or infinite sample",
            between(column="trace_finite_fraction", min_value=1.0, max_value=1.0)),
        tag("not_flat_std", f"Every component moves (std >= {p.flat_std_min_mps2} m/s²)",
            between(column="trace_min_std_mps2", min_value=p.flat_std_min_mps2)),
        tag("not_flat_run", f"No constant stretch longer than {p.flat_run_max_s} s",
            between(column="trace_longest_constant_run_s", min_value=0.0,
                    max_value=p.flat_run_max_s)),
        tag("not_clipped", f"At most {p.clip_max_peak_samples} samples at the peak |value|",
            between(column="trace_peak_sample_count", min_value=0,
                    max_value=p.clip_max_peak_samples)),
        tag("pga_in_range", f"PGA {p.pga_min_mps2}-{p.pga_max_mps2} m/s²",
            between(column="trace_pga_mps2", min_value=p.pga_min_mps2,
                    max_value=p.pga_max_mps2)),
        tag("vs30_in_range", f"Station Vs30 {p.vs30_min_mps}-{p.vs30_max_mps} m/s",
            between(column="station_vs30_mps", min_value=p.vs30_min_mps,
                    max_value=p.vs30_max_mps)),
        tag("station_vs30_consistent",
            f"One Vs30 per station (spread <= {p.station_vs30_tolerance_mps} m/s)",
            between(column="station_vs30_spread_mps", min_value=0.0,
                    max_value=p.station_vs30_tolerance_mps)),
        tag("vs30_method_allowed", f"station_vs30_method in {list(VS30_METHODS)}",
            E.ExpectColumnValuesToBeInSet(column="station_vs30_method",
                                          value_set=list(VS30_METHODS))),
        tag("vs30_method_present", "station_vs30_method is given ('unknown' if unknown)",
            not_null(column="station_vs30_method")),
        tag("p_before_s", "P arrival before S arrival (where both are known)",
            E.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="trace_s_arrival_sample", column_B="trace_p_arrival_sample",
                ignore_row_if="either_value_is_missing")),
        tag("p_inside_record", "P arrival sample inside the record",
            between(column="trace_p_arrival_fraction", min_value=0.0, max_value=1.0,
                    strict_max=True)),
        tag("s_inside_record", "S arrival sample inside the record",
            between(column="trace_s_arrival_fraction", min_value=0.0, max_value=1.0,
                    strict_max=True)),
        tag("station_latitude_in_range", "Station latitude in [-90, 90] deg",
            between(column="station_latitude_deg", min_value=-90.0, max_value=90.0)),
        tag("station_longitude_in_range", "Station longitude in [-180, 180] deg",
            between(column="station_longitude_deg", min_value=-180.0, max_value=180.0)),
        tag("station_latitude_present", "Station latitude is given",
            not_null(column="station_latitude_deg")),
        tag("station_longitude_present", "Station longitude is given",
            not_null(column="station_longitude_deg")),
        tag("source_latitude_in_range", "Source latitude in [-90, 90] deg",
            between(column="source_latitude_deg", min_value=-90.0, max_value=90.0)),
        tag("source_longitude_in_range", "Source longitude in [-180, 180] deg",
            between(column="source_longitude_deg", min_value=-180.0, max_value=180.0)),
        tag("source_depth_in_range", f"Source depth in {p.source_depth_range_km} km",
            between(column="source_depth_km", min_value=p.source_depth_range_km[0],
                    max_value=p.source_depth_range_km[1])),
        tag("magnitude_in_range", f"Magnitude in {p.magnitude_range}",
            between(column="source_magnitude", min_value=p.magnitude_range[0],
                    max_value=p.magnitude_range[1])),
        tag("distance_in_range", f"Hypocentral distance 0-{p.hyp_distance_max_km} km",
            between(column="path_hyp_distance_km", min_value=0.0,
                    max_value=p.hyp_distance_max_km)),
    ]
    if p.require_vs30:
        suite.append(tag("vs30_present", "Station Vs30 is given (labelled dataset)",
                         not_null(column="station_vs30_mps")))
    return suite


# --------------------------------------------------------------------------- running GX


def _gx_context(docs_dir: Path | None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.variables.data_docs_sites = {}
    if docs_dir is not None:
        context.add_data_docs_site(
            DOCS_SITE,
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    return context


def run_suite(frame: pd.DataFrame, params: ValidateParams, docs_dir: Path | None = None) -> Any:
    """Validate ``frame`` with the suite; build Data Docs into ``docs_dir`` when given.

    Returns GX's ``ExpectationSuiteValidationResult``.
    """
    import great_expectations as gx

    context = _gx_context(docs_dir)
    asset = context.data_sources.add_pandas("deepvs30").add_dataframe_asset("records")
    batch = asset.add_batch_definition_whole_dataframe("all_records")
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for expectation in expectations(params):
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="dataset", data=batch, suite=suite)
    )
    actions = []
    if docs_dir is not None:
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[DOCS_SITE]))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="validate",
            validation_definitions=[definition],
            actions=actions,
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": [RECORD_COLUMN, STATION_COLUMN],
                "return_unexpected_index_query": False,
            },
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    return next(iter(result.run_results.values()))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _observed(row: dict[str, Any], columns: list[str]) -> str:
    values = [_plain(row.get(c)) for c in columns]
    if len(values) == 1:
        return str(values[0])
    return "; ".join(f"{c}={v}" for c, v in zip(columns, values, strict=True))


def _outcome_rows(
    result: Any,
) -> tuple[ExpectationOutcome, list[dict[str, Any]]]:
    config = result.expectation_config
    kwargs = config.kwargs
    columns = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    check = (config.meta or {}).get("check", config.type)
    details = result.result or {}
    index_rows = details.get("unexpected_index_list") or []
    rows = [
        {
            "trace_name": str(r.get(RECORD_COLUMN)),
            "station": str(r.get(STATION_COLUMN)),
            "expectation": check,
            "observed": _observed(r, columns),
        }
        for r in index_rows
        if isinstance(r, dict)
    ]
    error = None
    info = result.exception_info or {}
    if info.get("raised_exception"):
        error = f"error: {info.get('exception_message')}"
    outcome = ExpectationOutcome(
        name=check,
        expectation_type=config.type,
        description=config.description or "",
        columns=columns,
        success=bool(result.success),
        n_checked=int(details.get("element_count") or 0),
        n_failing=int(details.get("unexpected_count") or len(rows)),
        failing_records=list(dict.fromkeys(r["trace_name"] for r in rows)),
        error=error,
    )
    return outcome, rows


def validate_frame(
    frame: pd.DataFrame,
    params: ValidateParams,
    docs_dir: Path | None = None,
) -> tuple[list[ExpectationOutcome], pd.DataFrame]:
    """Run the suite on a validation frame: outcomes and one failure row per record × check."""
    suite_result = run_suite(frame, params, docs_dir)
    outcomes, rows = [], []
    for result in suite_result.results:
        outcome, failure_rows = _outcome_rows(result)
        outcomes.append(outcome)
        rows.extend(failure_rows)
    failures = pd.DataFrame(rows, columns=["trace_name", "station", "expectation", "observed"])
    return outcomes, failures


def validate_dataset(
    path: str | Path,
    params: ValidateParams,
    report_dir: str | Path | None = None,
) -> ValidationReport:
    """Validate the canonical dataset at ``path``; write the report folder if ``report_dir``.

    Never raises on failing data (see :attr:`ValidationReport.success`); raises
    :class:`~deepvs30.errors.DatasetFormatError` if ``path`` is not a canonical dataset.
    """
    start_s = time.perf_counter()
    with CanonicalDataset(path) as dataset:
        stats = trace_statistics(dataset, clip_rel_tol=params.clip_rel_tol)
        frame = validation_frame(dataset.metadata, stats)
    stats.insert(1, "station", frame[STATION_COLUMN].to_numpy())
    if report_dir is None:
        outcomes, failures = validate_frame(frame, params)
        return _report(path, frame, outcomes, failures, stats, start_s)
    report_dir = Path(report_dir)
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{report_dir.name}.tmp-", dir=report_dir.parent))
    try:
        docs_dir = tmp_dir / DOCS_DIR if params.data_docs else None
        outcomes, failures = validate_frame(frame, params, docs_dir)
        report = _report(path, frame, outcomes, failures, stats, start_s)
        _write_report(report, tmp_dir, params.max_records_listed)
        _replace_dir(tmp_dir, report_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return report


def _report(
    path: str | Path,
    frame: pd.DataFrame,
    outcomes: list[ExpectationOutcome],
    failures: pd.DataFrame,
    stats: pd.DataFrame,
    start_s: float,
) -> ValidationReport:
    return ValidationReport(
        dataset_path=str(path),
        n_records=len(frame),
        success=all(o.success for o in outcomes),
        outcomes=outcomes,
        failures=failures,
        trace_stats=stats,
        elapsed_s=time.perf_counter() - start_s,
    )


def _write_report(report: ValidationReport, out_dir: Path, max_records: int) -> None:
    summary = report.summary(max_records)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
    report.failures.to_csv(out_dir / FAILURES_FILE, index=False)
    report.trace_stats.to_csv(out_dir / STATS_FILE, index=False)


def _replace_dir(src: Path, dst: Path) -> None:
    """Swap ``src`` in as ``dst`` (two renames; the old report is removed afterwards)."""
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{src.name[-8:]}")
        dst.rename(old)
        src.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        src.rename(dst)


# --------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="canonical dataset folder (default: data.path in params)")
    parser.add_argument("--report", help="report folder (default: validate.report_dir)")


def _data_path(params: dict[str, Any]) -> str:
    path = (params.get("data") or {}).get("path")
    if not isinstance(path, str):
        where = params.get("__path__", "params.yaml")
        raise ConfigError(f"{where}: data.path must name the dataset folder (or pass --data)")
    return path


def run(args: argparse.Namespace, params: dict[str, Any]) -> int:
    validate_params = section(params, "validate", ValidateParams)
    data_path = args.data or _data_path(params)
    report_dir = Path(args.report or validate_params.report_dir)
    report = validate_dataset(data_path, validate_params, report_dir)
    log.info(
        "validated %d records against %d expectations in %.1f s; report in %s",
        report.n_records, len(report.outcomes), report.elapsed_s, report_dir,
    )
    if not report.success:
        raise ValidationFailed(f"{report.message()} (details: {report_dir / SUMMARY_FILE})")
    return 0
