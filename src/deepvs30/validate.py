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
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deepvs30.config import data_path, section
from deepvs30.dataset import (
    VS30_METHODS,
    CanonicalDataset,
    record_ids,
    replace_dir,
    staging_dir,
    station_key,
)
from deepvs30.errors import ValidationFailed
from deepvs30.trace_stats import trace_statistics

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
logging.getLogger("great_expectations").setLevel(logging.WARNING)  # GX logs its own plumbing

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


def _tagged(check: str, description: str, expectation: Any) -> Any:
    expectation.meta = {"check": check}
    expectation.description = description
    return expectation


def _in_range(check: str, column: str, low: float | None, high: float | None, **kw: Any) -> Any:
    import great_expectations as gx

    shown = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    return _tagged(
        check,
        f"{column} in {shown}",
        gx.expectations.ExpectColumnValuesToBeBetween(
            column=column, min_value=low, max_value=high, **kw
        ),
    )


def _in_set(check: str, column: str, values: list[Any]) -> Any:
    import great_expectations as gx

    return _tagged(
        check,
        f"{column} in {values}",
        gx.expectations.ExpectColumnValuesToBeInSet(column=column, value_set=values),
    )


def _present(check: str, column: str) -> Any:
    import great_expectations as gx

    return _tagged(
        check, f"{column} is given", gx.expectations.ExpectColumnValuesToNotBeNull(column=column)
    )


def expectations(params: ValidateParams) -> list[Any]:
    """The suite, each expectation tagged with a short stable name in ``meta["check"]``.

    Range checks skip missing values; the ``*_present`` checks say which values must be given.
    """
    import great_expectations as gx

    p = params
    suite = [
        _tagged(
            "trace_name_unique",
            "record names are unique",
            gx.expectations.ExpectColumnValuesToBeUnique(column=RECORD_COLUMN),
        ),
        _present("station_present", "station_code"),
        _present("sampling_rate_present", "trace_sampling_rate_hz"),
        _in_set("sampling_rate_allowed", "trace_sampling_rate_hz", list(p.sampling_rates_hz)),
        _in_range("duration_in_range", "trace_duration_s", p.min_duration_s, p.max_duration_s),
        _in_range(
            "components_same_length",
            "trace_component_length_spread_samples",
            0,
            p.component_length_tolerance_samples,
        ),
        _in_range("all_samples_finite", "trace_finite_fraction", 1.0, 1.0),
        _in_range("not_flat_std", "trace_min_std_mps2", p.flat_std_min_mps2, None),
        _in_range("not_flat_run", "trace_longest_constant_run_s", 0.0, p.flat_run_max_s),
        _in_range("not_clipped", "trace_peak_sample_count", 0, p.clip_max_peak_samples),
        _in_range("pga_in_range", "trace_pga_mps2", p.pga_min_mps2, p.pga_max_mps2),
        _in_range("vs30_in_range", "station_vs30_mps", p.vs30_min_mps, p.vs30_max_mps),
        _in_range(
            "station_vs30_consistent",
            "station_vs30_spread_mps",
            0.0,
            p.station_vs30_tolerance_mps,
        ),
        _present("vs30_method_present", "station_vs30_method"),
        _in_set("vs30_method_allowed", "station_vs30_method", list(VS30_METHODS)),
        _tagged(
            "p_before_s",
            "trace_p_arrival_sample < trace_s_arrival_sample where both are known",
            gx.expectations.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="trace_s_arrival_sample",
                column_B="trace_p_arrival_sample",
                ignore_row_if="either_value_is_missing",
            ),
        ),
        _in_range("p_inside_record", "trace_p_arrival_fraction", 0, 1, strict_max=True),
        _in_range("s_inside_record", "trace_s_arrival_fraction", 0, 1, strict_max=True),
        _present("station_latitude_present", "station_latitude_deg"),
        _present("station_longitude_present", "station_longitude_deg"),
        _in_range("station_latitude_in_range", "station_latitude_deg", -90.0, 90.0),
        _in_range("station_longitude_in_range", "station_longitude_deg", -180.0, 180.0),
        _in_range("source_latitude_in_range", "source_latitude_deg", -90.0, 90.0),
        _in_range("source_longitude_in_range", "source_longitude_deg", -180.0, 180.0),
        _in_range("source_depth_in_range", "source_depth_km", *p.source_depth_range_km),
        _in_range("magnitude_in_range", "source_magnitude", *p.magnitude_range),
        _in_range("distance_in_range", "path_hyp_distance_km", 0.0, p.hyp_distance_max_km),
    ]
    if p.require_vs30:
        suite.append(_present("vs30_present", "station_vs30_mps"))
    return suite


# --------------------------------------------------------------------------- running GX


def _gx_context(docs_dir: Path | None) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # this GX module pins its own logger to INFO at import; keep its notes out of our log
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
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
    tmp_dir = staging_dir(report_dir)  # and those of killed runs removed
    try:
        docs_dir = tmp_dir / DOCS_DIR if params.data_docs else None
        outcomes, failures = validate_frame(frame, params, docs_dir)
        report = _report(path, frame, outcomes, failures, stats, start_s)
        _write_report(report, tmp_dir, params.max_records_listed)
        replace_dir(tmp_dir, report_dir)
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


# --------------------------------------------------------------------------- the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="canonical dataset folder (default: data.path in params)")
    parser.add_argument("--report", help="report folder (default: validate.report_dir)")


def run(args: argparse.Namespace, params: dict[str, Any]) -> int:
    validate_params = section(params, "validate", ValidateParams)
    data_dir = args.data or data_path(params)
    report_dir = Path(args.report or validate_params.report_dir)
    report = validate_dataset(data_dir, validate_params, report_dir)
    log.info(
        "validated %d records against %d expectations in %.1f s; report in %s",
        report.n_records,
        len(report.outcomes),
        report.elapsed_s,
        report_dir,
    )
    if not report.success:
        raise ValidationFailed(f"{report.message()} (details: {report_dir / SUMMARY_FILE})")
    return 0
