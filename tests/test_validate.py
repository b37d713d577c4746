"""validate stage: a good dataset passes; each defect fails its expectation, naming the record."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from deepvs30 import cli
from deepvs30.config import section
from deepvs30.dataset import REQUIRED_COLUMNS, write_dataset
from deepvs30.trace_stats import longest_constant_run, peak_sample_count, waveform_statistics
from deepvs30.validate import ValidateParams, validate_dataset

REPO = Path(__file__).resolve().parents[1]
RATE_HZ = 100.0
DURATION_S = 60.0

Record = tuple[dict, np.ndarray]


def _burst_waveform(rng: np.random.Generator, p_sample: int, s_sample: int) -> np.ndarray:
    """Low-passed noise with a P and a larger S burst, decaying; (3, n) in m/s²."""
    n = int(DURATION_S * RATE_HZ)
    t = np.arange(n)
    envelope = np.full(n, 2e-4)
    envelope += np.where(t >= p_sample, 0.02 * np.exp(-(t - p_sample) / 300.0), 0.0)
    envelope += np.where(t >= s_sample, 0.2 * np.exp(-(t - s_sample) / 800.0), 0.0)
    kernel = np.hanning(9) / np.hanning(9).sum()
    noise = rng.standard_normal((3, n))
    smooth = np.stack([np.convolve(c, kernel, mode="same") for c in noise])
    return smooth * envelope


def _record(
    rng: np.random.Generator, name: str, station: str, vs30_mps: float, event: int
) -> Record:
    p_sample, s_sample = 1000 + 50 * event, 1800 + 80 * event
    metadata = {column: None for column in REQUIRED_COLUMNS}
    metadata.update(
        trace_name=name,
        station_network_code="XX",
        station_code=station,
        station_latitude_deg=38.0 + 0.1 * event,
        station_longitude_deg=27.0,
        station_vs30_mps=vs30_mps,
        station_vs30_method="measured",
        source_id=f"ev{event}",
        source_magnitude=5.0,
        source_latitude_deg=38.5,
        source_longitude_deg=27.5,
        source_depth_km=10.0,
        path_hyp_distance_km=40.0 + 5 * event,
        trace_sampling_rate_hz=RATE_HZ,
        trace_p_arrival_sample=p_sample,
        trace_s_arrival_sample=s_sample,
        trace_start_time="2020-01-01T00:00:00",
    )
    return metadata, _burst_waveform(rng, p_sample, s_sample)


def good_records(seed: int = 0) -> list[Record]:
    """Six records at three stations (two each), each station with one Vs30."""
    rng = np.random.default_rng(seed)
    stations = [("STA1", 250.0), ("STA2", 400.0), ("STA3", 760.0)]
    records = []
    for i in range(6):
        station, vs30 = stations[i // 2]
        records.append(_record(rng, f"rec_{i:02d}", station, vs30, event=i))
    return records


def _single_station_record(vs30_mps: float) -> Record:
    return _record(np.random.default_rng(99), "rec_solo", "SOLO", vs30_mps, event=1)


# Each defect edits the good records and says which expectations fail on which records.
Defect = Callable[[list[Record]], dict[str, set[str]]]


def _nan_sample(records: list[Record]) -> dict[str, set[str]]:
    records[3][1][1, 3000] = np.nan
    return {"all_samples_finite": {"rec_03"}}


def _flat_trace(records: list[Record]) -> dict[str, set[str]]:
    records[2][1][2, :] = 0.0
    return {"not_flat_std": {"rec_02"}, "not_flat_run": {"rec_02"}}


def _clipped_trace(records: list[Record]) -> dict[str, set[str]]:
    waveform = records[4][1]
    rail = 0.3 * np.abs(waveform).max()
    records[4] = (records[4][0], np.clip(waveform, -rail, rail))
    return {"not_clipped": {"rec_04"}}


def _vs30_too_high(records: list[Record]) -> dict[str, set[str]]:
    records.append(_single_station_record(5000.0))
    return {"vs30_in_range": {"rec_solo"}}


def _vs30_missing(records: list[Record]) -> dict[str, set[str]]:
    records.append(_single_station_record(np.nan))
    return {"vs30_present": {"rec_solo"}}


def _p_after_s(records: list[Record]) -> dict[str, set[str]]:
    meta = records[1][0]
    meta["trace_p_arrival_sample"], meta["trace_s_arrival_sample"] = 2500, 1500
    return {"p_before_s": {"rec_01"}}


def _picks_outside(records: list[Record]) -> dict[str, set[str]]:
    records[5][0]["trace_p_arrival_sample"] = 7000
    records[5][0]["trace_s_arrival_sample"] = 9000
    return {"p_inside_record": {"rec_05"}, "s_inside_record": {"rec_05"}}


def _duplicate_name(records: list[Record]) -> dict[str, set[str]]:
    records[4][0]["trace_name"] = "rec_01"
    return {"trace_name_unique": {"rec_01"}}


def _inconsistent_station_vs30(records: list[Record]) -> dict[str, set[str]]:
    records[3][0]["station_vs30_mps"] = 600.0  # rec_02 and rec_03 share STA2 (400 m/s)
    return {"station_vs30_consistent": {"rec_02", "rec_03"}}


def _absurd_pga(records: list[Record]) -> dict[str, set[str]]:
    records[0] = (records[0][0], records[0][1] * 1e4)  # e.g. a gal → m/s² slip
    return {"pga_in_range": {"rec_00"}}


def _bad_sampling_rate(records: list[Record]) -> dict[str, set[str]]:
    records[2][0]["trace_sampling_rate_hz"] = 37.0
    return {"sampling_rate_allowed": {"rec_02"}}


def _bad_vs30_method(records: list[Record]) -> dict[str, set[str]]:
    records[5][0]["station_vs30_method"] = "guessed"
    return {"vs30_method_allowed": {"rec_05"}}


def _bad_latitude(records: list[Record]) -> dict[str, set[str]]:
    records[1][0]["station_latitude_deg"] = 123.0
    return {"station_latitude_in_range": {"rec_01"}}


def _short_record(records: list[Record]) -> dict[str, set[str]]:
    records[0] = (records[0][0], records[0][1][:, :500])  # 5 s, P/S picks now outside
    return {
        "duration_in_range": {"rec_00"},
        "p_inside_record": {"rec_00"},
        "s_inside_record": {"rec_00"},
    }


DEFECTS: dict[str, Defect] = {
    "nan_sample": _nan_sample,
    "flat_trace": _flat_trace,
    "clipped_trace": _clipped_trace,
    "vs30_too_high": _vs30_too_high,
    "vs30_missing": _vs30_missing,
    "p_after_s": _p_after_s,
    "picks_outside": _picks_outside,
    "duplicate_name": _duplicate_name,
    "inconsistent_station_vs30": _inconsistent_station_vs30,
    "absurd_pga": _absurd_pga,
    "bad_sampling_rate": _bad_sampling_rate,
    "bad_vs30_method": _bad_vs30_method,
    "bad_latitude": _bad_latitude,
    "short_record": _short_record,
}


@pytest.fixture(scope="module")
def params() -> ValidateParams:
    """The validate section of the repository's params.yaml (so the file is checked too)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    return section(raw, "validate", ValidateParams)


def _failing(report_outcomes) -> dict[str, set[str]]:
    return {o.name: set(o.failing_records) for o in report_outcomes if not o.success}


def test_good_dataset_passes_and_writes_report(tmp_path: Path, params: ValidateParams) -> None:
    data = write_dataset(tmp_path / "data", good_records(), bucket_size=4)
    report_dir = tmp_path / "reports" / "validation"
    report = validate_dataset(data, params, report_dir)

    assert _failing(report.outcomes) == {}
    assert report.success and report.n_records == 6
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["success"] is True
    assert summary["n_failing_records"] == 0
    assert len(summary["expectations"]) == len(report.outcomes) >= 20
    assert pd.read_csv(report_dir / "failures.csv").empty
    stats = pd.read_csv(report_dir / "trace_stats.csv")
    assert list(stats["trace_name"]) == [f"rec_{i:02d}" for i in range(6)]
    assert (stats["trace_n_samples"] == 6000).all()
    assert np.allclose(stats["trace_duration_s"], 60.0)
    assert (report_dir / "data_docs" / "index.html").is_file()
    assert not list((tmp_path / "reports").glob(".validation.tmp-*"))


def _dead_owner() -> str:
    """``pid@host`` of a process that has ended."""
    import socket
    import subprocess
    import sys

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    return f"{ended.pid}@{socket.gethostname()}"


def test_writers_remove_the_staging_folders_of_killed_runs(
    tmp_path: Path, params: ValidateParams
) -> None:
    """A SIGKILL runs no clean-up: the next run's writer sweeps what the killed one staged
    (and leaves a live process's, or another host's, alone)."""
    dead, live = _dead_owner(), f"{os.getpid()}@{socket.gethostname()}"
    staged = {name: tmp_path / f".{name}.tmp-{dead}-x1" for name in ("data", "report")}
    others = [
        tmp_path / f".data.tmp-{live}-x2",
        tmp_path / f".report.tmp-{dead.split('@')[0]}@elsewhere-x3",
    ]
    for folder in [*staged.values(), *others]:
        (folder / "half").mkdir(parents=True)

    data = write_dataset(tmp_path / "data", good_records(), bucket_size=4)
    assert not staged["data"].exists() and staged["report"].exists()
    validate_dataset(data, params, tmp_path / "report")

    assert not staged["report"].exists()
    assert all(folder.is_dir() for folder in others)
    assert (tmp_path / "report" / "summary.json").is_file()


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_fails_its_expectation_on_its_record(
    tmp_path: Path, params: ValidateParams, defect: str
) -> None:
    records = good_records()
    expected = DEFECTS[defect](records)
    data = write_dataset(tmp_path / "data", records, bucket_size=4)

    report = validate_dataset(data, params)

    assert not report.success
    assert _failing(report.outcomes) == expected
    failures = report.failures
    assert set(zip(failures["expectation"], failures["trace_name"], strict=True)) == {
        (check, name) for check, names in expected.items() for name in names
    }
    quarantined = report.failed_records()
    assert set(quarantined) == set().union(*expected.values())


def test_report_files_name_failing_records(tmp_path: Path, params: ValidateParams) -> None:
    records = good_records()
    _nan_sample(records)
    _absurd_pga(records)
    data = write_dataset(tmp_path / "data", records, bucket_size=4)
    report_dir = tmp_path / "report"

    validate_dataset(data, params, report_dir)

    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["success"] is False
    by_name = {e["name"]: e for e in summary["expectations"]}
    assert by_name["all_samples_finite"]["failing_records"] == ["rec_03"]
    assert by_name["all_samples_finite"]["n_failing"] == 1
    assert by_name["pga_in_range"]["failing_records"] == ["rec_00"]
    assert by_name["vs30_in_range"]["success"] is True
    failures = pd.read_csv(report_dir / "failures.csv")
    assert sorted(zip(failures["trace_name"], failures["expectation"], strict=True)) == [
        ("rec_00", "pga_in_range"),
        ("rec_03", "all_samples_finite"),
    ]
    assert set(failures["station"]) == {"XX.STA1", "XX.STA2"}
    pga_row = failures[failures["expectation"] == "pga_in_range"].iloc[0]
    assert float(pga_row["observed"]) > params.pga_max_mps2
    assert (report_dir / "data_docs" / "index.html").is_file()


def test_summary_lists_at_most_max_records(tmp_path: Path, params: ValidateParams) -> None:
    records = good_records()
    for meta, _ in records:
        meta["station_vs30_method"] = "guessed"
    data = write_dataset(tmp_path / "data", records, bucket_size=4)
    few = ValidateParams(**{**params.__dict__, "max_records_listed": 2, "data_docs": False})

    validate_dataset(data, few, tmp_path / "report")

    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    entry = next(e for e in summary["expectations"] if e["name"] == "vs30_method_allowed")
    assert entry["n_failing"] == 6
    assert entry["failing_records"] == ["rec_00", "rec_01"]
    assert entry["failing_records_truncated"] is True
    assert not (tmp_path / "report" / "data_docs").exists()


def _write_params(tmp_path: Path) -> Path:
    params_path = tmp_path / "params.yaml"
    params_path.write_text((REPO / "params.yaml").read_text())
    return params_path


def test_cli_fails_naming_record_and_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = good_records()
    _p_after_s(records)
    data = write_dataset(tmp_path / "data", records, bucket_size=4)
    report_dir = tmp_path / "report"
    argv = ["--params", str(_write_params(tmp_path)), "validate", "--data", str(data)]

    code = cli.main([*argv, "--report", str(report_dir)])

    assert code != 0
    err = capsys.readouterr().err
    assert "p_before_s" in err and "rec_01" in err
    assert "rec_00" not in err
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["success"] is False
    assert (report_dir / "data_docs" / "index.html").is_file()


def test_cli_passes_and_replaces_old_report(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", good_records(), bucket_size=4)
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    (report_dir / "stale.txt").write_text("from an earlier run")
    argv = ["--params", str(_write_params(tmp_path)), "validate", "--data", str(data)]

    assert cli.main([*argv, "--report", str(report_dir)]) == 0
    assert not (report_dir / "stale.txt").exists()
    assert json.loads((report_dir / "summary.json").read_text())["success"] is True


def test_cli_reports_missing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--params", str(_write_params(tmp_path)), "validate"]
    code = cli.main([*argv, "--data", str(tmp_path / "nowhere"), "--report", str(tmp_path / "r")])
    assert code != 0
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- statistics


def test_longest_constant_run_counts_equal_neighbours() -> None:
    assert longest_constant_run(np.array([1.0, 2.0, 2.0, 2.0, 3.0, 3.0])) == 3
    assert longest_constant_run(np.array([1.0, 2.0, 3.0])) == 1
    assert longest_constant_run(np.zeros(10)) == 10
    assert longest_constant_run(np.array([np.nan, np.nan, 1.0])) == 1


def test_peak_sample_count_flags_a_rail() -> None:
    t = np.linspace(0, 20 * np.pi, 2001)
    x = np.sin(t) * np.exp(-t / 20)  # decaying oscillation: one sample at the peak
    assert peak_sample_count(x) <= 2
    assert peak_sample_count(np.clip(x, -0.5, 0.5)) > 100
    assert peak_sample_count(np.zeros(50)) == 0


def test_waveform_statistics_units() -> None:
    waveform = np.zeros((3, 1000))
    waveform[0, 10] = -2.5
    waveform[1] = np.linspace(-1, 1, 1000)
    waveform[2] = 0.1 * np.cos(np.arange(1000))
    stats = waveform_statistics(waveform, sampling_rate_hz=200.0)
    assert stats["trace_duration_s"] == pytest.approx(5.0)
    assert stats["trace_pga_z_mps2"] == pytest.approx(2.5)
    assert stats["trace_pga_mps2"] == pytest.approx(2.5)
    assert stats["trace_longest_constant_run_s"] == pytest.approx(989 / 200.0)
    assert stats["trace_finite_fraction"] == 1.0
    assert stats["trace_component_length_spread_samples"] == 0


def test_unlabelled_dataset_passes_when_vs30_not_required(
    tmp_path: Path, params: ValidateParams
) -> None:
    records = good_records()
    for meta, _ in records:
        meta["station_vs30_mps"], meta["station_vs30_method"] = np.nan, "unknown"
    data = write_dataset(tmp_path / "data", records, bucket_size=4)
    unlabelled = ValidateParams(**{**params.__dict__, "require_vs30": False})

    assert validate_dataset(data, unlabelled).success
    assert _failing(validate_dataset(data, params).outcomes) == {
        "vs30_present": {f"rec_{i:02d}" for i in range(6)}
    }
