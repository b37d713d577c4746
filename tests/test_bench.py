"""`deepvs30 bench --quick` (the CI smoke run): every section is there, with finite positive
rates or an explicit skip note. No timing thresholds: timings belong to bench/results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepvs30 import bench
from deepvs30.cli import main

REPO = Path(__file__).resolve().parents[1]


def _keys(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node).union(*(_keys(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_keys(v) for v in node))
    return set()


def _measurements(node: object, path: str = "") -> list[tuple[str, object]]:
    """(path, value) of every rate, ratio and latency in the results tree."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}"
            rate_like = key.endswith(("_per_s", "_per_hour", "_ms", "ratio")) or key in (
                "seconds",
                "latency_s",
            )
            if rate_like and not isinstance(value, dict | list):
                found.append((where, value))
            found += _measurements(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _measurements(value, f"{path}[{i}]")
    return found


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench")
    code = main(
        ["--params", str(REPO / "params.yaml"), "bench", "--quick", "--out", str(out),
         "--tmp-dir", str(out)]
    )  # fmt: skip
    assert code == 0
    assert (out / bench.RESULTS_MD).is_file()
    assert not list(out.glob("deepvs30-bench-*")), "temporary folder left behind"
    return json.loads((out / bench.RESULTS_JSON).read_text())


def test_every_section_measured_or_skipped_with_a_note(quick_results):
    assert quick_results["meta"]["quick"] is True
    for name in bench.SECTIONS:
        section = quick_results[name]
        assert "error" not in _keys(section), (name, section)
        assert "skipped" in section or _measurements(section), name


def test_archive_size_ingest_runs_last_and_lands_in_the_ingest_section(quick_results):
    scale = quick_results["ingest"]["scale"]
    if "skipped" not in scale:  # no real records here
        assert [row["records"] for row in scale["sizes"]] == bench.QUICK["ingest_scale_records"]
        assert all(row["ingested"] + row["quarantined"] == row["records"] for row in scale["sizes"])
    assert scale["section_seconds"] > 0


def test_rates_are_finite_and_positive(quick_results):
    values = _measurements({k: quick_results[k] for k in bench.SECTIONS})
    assert values
    for where, value in values:
        assert isinstance(value, int | float), where
        assert math.isfinite(value) and value > 0, (where, value)


def test_memory_and_threads_reported(quick_results):
    for step in quick_results["scaling"]["prepare"] + quick_results["scaling"]["epoch"]:
        assert step["peak_rss_mb"] > 0
    training = quick_results["training"]
    assert training["torch_num_threads"] >= 1
    assert set(quick_results["scaling"]["exponents"]) >= {"prepare_time", "epoch_time"}


def test_log_log_slope():
    assert bench.log_log_slope([1, 10, 100], [3, 30, 300]) == pytest.approx(1.0)
    assert bench.log_log_slope([1, 10, 100], [5, 5, 5]) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(bench.log_log_slope([1], [1]))


def test_quick_overrides_are_checked():
    params = bench.BenchParams(quick={"knet_records": 3})
    assert params.quick_mode().knet_records == 3
    with pytest.raises(Exception, match="unknown key"):
        bench.BenchParams(quick={"no_such_key": 1}).quick_mode()


def test_workers_section_uses_each_workers_share(quick_results):
    workers = quick_results["workers"]
    cores = workers["usable_cores"]
    shares = [lay for lay in workers["layouts"] if lay["rule"] == "share"]
    assert [lay["workers"] for lay in shares] == [1, 2]  # bench.quick worker_counts
    for lay in shares:
        assert lay["threads"] == max(1, cores // lay["workers"])
        assert len(lay["steps_per_s_each"]) == lay["workers"]
        assert lay["steps_per_s"] == pytest.approx(sum(lay["steps_per_s_each"]))


def test_results_md_is_the_flat_table_of_every_measurement():
    results = {
        "meta": {},
        "training": {"ours_samples_per_s": 305.123, "ratio": 1.09, "samples": 64,
                     "peak_rss_mb": 525.0, "peak_anon_mb": 428.4, "cpu_use": 1.2},
        "tuning": {"skipped": "bench.tune_trials is 0"},
        "workers": {"layouts": [{"workers": 2, "threads": 1, "rule": "share",
                                 "steps_per_s": 11.4, "speedup": float("nan")}]},
        "faults": {"recovery_s": 2.5, "nested": {"window_ms_per_item": 0.29}},
    }  # fmt: skip
    frame = bench.results_frame(results)
    assert list(frame.columns) == bench.COLUMNS
    rows = {(r.section, r.what): r for r in frame.itertuples()}
    ours = rows["training", "ours_samples_per_s"]
    assert (ours.value, ours.unit) == (305.0, "samples/s")
    assert "peak RSS 525 MB" in ours.note and "CPU use 1.2" in ours.note
    assert ("training", "samples") not in rows  # a count, not a measurement
    assert rows["tuning", ""].note == "skipped: bench.tune_trials is 0"
    assert rows["workers", "layouts[2x1 share].speedup"].value is None  # NaN: not measured
    assert rows["faults", "recovery_s"].unit == "s"  # a section without code of its own
    assert rows["faults", "nested.window_ms_per_item"].unit == "ms per item"
    markdown = frame.to_markdown(index=False)
    assert markdown.startswith("| section")


def test_step_tune_counts_the_study_states(monkeypatch, tmp_path):
    from deepvs30 import tune

    states = {"RUNNING": 0, "WAITING": 0, "COMPLETE": 2, "PRUNED": 1, "FAIL": 1}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench, "load_params", lambda path: {"__path__": path})
    monkeypatch.setattr(tune, "load_setup", lambda params, args: SimpleNamespace(mlflow=None))
    monkeypatch.setattr(tune, "configure_mlflow", lambda params: "")
    monkeypatch.setattr(tune, "run_worker", lambda setup: states)
    out = bench.step_tune(str(tmp_path / "params.yaml"), str(tmp_path), str(tmp_path))
    assert (out["complete"], out["pruned"], out["fail"]) == (2, 1, 1)
    assert out["trials_per_hour"] > 0


def test_shift_record_time_moves_the_knet_header_only():
    from datetime import timedelta

    from deepvs30.readers.knet import shift_record_time

    text = "Origin Time       2020/01/02 11:59:50\nRecord Time       2020/01/02 12:00:10\n1 2\n"
    shifted = shift_record_time(text, timedelta(minutes=61))
    assert "Record Time       2020/01/02 13:01:10\n" in shifted
    assert shifted.replace("13:01:10", "12:00:10") == text
    assert shift_record_time("no header\n", timedelta(minutes=1)) == "no header\n"


def test_the_device_reported_is_where_the_training_steps_run(monkeypatch):
    """Not a constant: train.device resolved (here a CUDA GPU mocked in, then the CPU)."""
    import torch

    from deepvs30.train import TrainParams

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert bench._meta(False, TrainParams(device="auto"))["device"] == "cuda"
    assert bench._meta(False, TrainParams(device="cpu"))["device"] == "cpu"


def test_scaling_only_adds_sizes_to_an_earlier_run(quick_results, tmp_path):
    """`--scaling-only N`: the archive-size prepare rerun alone, merged into the earlier
    results (the other sections untouched, the prepare section from the largest size)."""
    (tmp_path / bench.RESULTS_JSON).write_text(json.dumps(quick_results))
    code = main(
        ["--params", str(REPO / "params.yaml"), "bench", "--quick", "--out", str(tmp_path),
         "--tmp-dir", str(tmp_path), "--scaling-only", "240", "100"]
    )  # fmt: skip
    assert code == 0
    got = json.loads((tmp_path / bench.RESULTS_JSON).read_text())
    scaling = got["scaling"]
    assert scaling["records"] == [60, 100, 180, 240]
    assert [p["records"] for p in scaling["prepare"]] == scaling["records"]
    assert scaling["prepare"][2] == quick_results["scaling"]["prepare"][1]  # 180: kept
    assert got["prepare"]["records"] == 240
    assert set(got["prepare"]["records_per_s_by_size"]) == {"60", "100", "180", "240"}
    assert math.isfinite(scaling["exponents"]["prepare_time"])
    assert got["scaling_run"]["sizes"] == [100, 240]
    assert got["scaling_run"]["command"] == "deepvs30 bench --scaling-only 100 240"
    assert {k: got[k] for k in ("training", "inference", "ingest")} == {
        k: quick_results[k] for k in ("training", "inference", "ingest")
    }
    assert not list(tmp_path.glob("deepvs30-bench-*")), "temporary folder left behind"


def test_scaling_only_needs_an_earlier_run(tmp_path):
    code = main(
        ["--params", str(REPO / "params.yaml"), "bench", "--quick", "--out", str(tmp_path),
         "--tmp-dir", str(tmp_path), "--scaling-only", "100"]
    )  # fmt: skip
    assert code != 0


@pytest.mark.realdata
def test_cli_only_remeasures_the_command_line_latencies(quick_results, tmp_path):
    """`--cli-only`: predict on one real file and --help timed again with a fresh bundle, the
    import floor beside them; the other sections untouched."""
    (tmp_path / bench.RESULTS_JSON).write_text(json.dumps(quick_results))
    code = main(
        ["--params", str(REPO / "params.yaml"), "bench", "--quick", "--out", str(tmp_path),
         "--tmp-dir", str(tmp_path), "--cli-only"]
    )  # fmt: skip
    assert code == 0
    got = json.loads((tmp_path / bench.RESULTS_JSON).read_text())
    inference, before = got["inference"], quick_results["inference"]
    cli = inference["predict_cli"]
    assert len(cli["runs_s"]) == 3  # warm runs: the first, unmeasured, fills the file cache
    assert min(cli["runs_s"]) - 0.01 <= cli["latency_s"] <= max(cli["runs_s"]) + 0.01
    assert math.isfinite(cli["imports_s"]) and cli["imports_s"] > 0  # no timing comparison:
    # the floor and the call are medians of separate runs, either may be the slower under load
    assert inference["help_cli"]["help_s"] > 0
    assert inference["cli_run"]["command"] == "deepvs30 bench --cli-only"
    for key in set(before) - {"predict_cli", "help_cli"}:
        assert inference[key] == before[key], key
    assert got["training"] == quick_results["training"]
