"""Model cards of registered versions (deepvs30.model_card) and the facts register gathers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from deepvs30.dashboard import STORAGE_ENV, study_storage
from deepvs30.model_card import SYNTHETIC_USE, model_card, real_use
from deepvs30.register import params_hash, training_summary

METRICS = {
    "station": {"n": 30, "mape_pct": 16.7904, "std_ln": 0.213719, "pearson_r_ln": 0.940483},
    "baseline_median": {"n": 30, "mape_pct": 60.5014, "std_ln": 0.596352, "pearson_r_ln": 0.0},
    "baseline_hv": {"n": 30, "mape_pct": 30.0915, "std_ln": 0.392873, "pearson_r_ln": 0.756694},
}
INFO = {
    "name": "deepvs30",
    "version": "3",
    "model_family": "cnn_lstm",
    "data_version": "dvc:0123abcd",
    "split": "split:test",
    "training": {
        "n_stations": 141,
        "n_records": 2097,
        "regions": ["cluster 0", "cluster 4"],
        "networks": ["SY"],
    },  # fmt: skip
    "metrics": METRICS,
    "lineage": {"git_commit": "1e649dd", "run_id": "9b75f929", "params_hash": "a1b2c3d4e5f6"},
}


def table_row(card: str, label: str) -> list[str]:
    (line,) = [x for x in card.splitlines() if x.startswith(f"| {label} |")]
    return [cell.strip() for cell in line.strip("|").split("|")][1:]


def test_card_puts_metrics_beside_the_baselines() -> None:
    card = model_card(INFO)
    assert card.startswith("### deepvs30 v3 (cnn_lstm)")
    assert table_row(card, "station MAPE (%)") == ["16.8", "60.5", "30.1"]
    assert table_row(card, "std of ln residuals") == ["0.214", "0.596", "0.393"]
    assert table_row(card, "Pearson r (ln)") == ["0.940", "0.000", "0.757"]
    assert "| station metrics, split:test | model | training median | H/V (f0, A0) |" in card
    assert "30 stations scored." in card


def test_card_names_data_use_and_lineage() -> None:
    card = model_card(INFO)
    assert f"**Intended use:** {SYNTHETIC_USE}" in card
    assert "synthetic-trained: not for real records" in card
    assert "version `dvc:0123abcd`; 141 training stations (2097 records)" in card
    assert "regions cluster 0, cluster 4; networks SY" in card
    assert "git commit `1e649dd`; MLflow run `9b75f929`; params hash `a1b2c3d4e5f6`" in card
    assert "fine-tuned from" not in card
    tuned = model_card({**INFO, "lineage": {**INFO["lineage"], "parent_model_uri": "runs:/x/m"}})
    assert "fine-tuned from `runs:/x/m`" in tuned


def test_card_without_metrics_or_training_says_unknown() -> None:
    card = model_card({"name": "m", "version": "1"})
    assert "No evaluation metrics were registered with this version." in card
    assert "version `unknown`; training stations unknown" in card
    assert "git commit `unknown`; MLflow run `unknown`; params hash `unknown`" in card


def test_missing_or_nan_metric_is_a_dash() -> None:
    metrics = {"station": {"mape_pct": 20.0, "std_ln": float("nan")}, "baseline_hv": {}}
    card = model_card({**INFO, "metrics": metrics})
    assert table_row(card, "station MAPE (%)") == ["20.0", "–", "–"]
    assert table_row(card, "std of ln residuals") == ["–", "–", "–"]


def test_real_use_quotes_the_benchmark_figures() -> None:
    figures = {"station": {"mape_pct": 31.24}, "baseline_median": {"mape_pct": 55.0},
               "baseline_hv": {"mape_pct": 41.96}}  # fmt: skip
    text = real_use("cnn_lstm_hv", figures, best=True, sigma_scale=1.234)
    assert text.startswith("real records.")
    assert "the real benchmark's best arm `cnn_lstm_hv`" in text
    assert "out-of-fold station MAPE 31.2%" in text
    assert "(training median 55.0%, H/V 42.0%)" in text
    assert "scaled by 1.23" in text
    assert "arm set in params.yaml" in real_use("cnn", figures, best=False, sigma_scale=1.0)


def test_training_summary_counts_the_train_split(tmp_path) -> None:
    pd.DataFrame({
        "station": ["SY.A", "SY.A", "SY.B", "XX.C", "SY.D"],
        "cluster": [0, 0, 3, 3, 1],
        "split": ["train", "train", "train", "train", "test"],
        "split_cluster": ["test", "train", "train", "train", "train"],
    }).to_csv(tmp_path / "records.csv", index=False)  # fmt: skip
    assert training_summary(tmp_path) == {
        "n_stations": 3, "n_records": 4, "regions": ["cluster 0", "cluster 3"],
        "networks": ["SY", "XX"],
    }  # fmt: skip
    assert training_summary(tmp_path, "split_cluster")["n_stations"] == 4
    assert training_summary(tmp_path / "gone") == {}


def test_params_hash_depends_on_values_not_order() -> None:
    a = params_hash({"train.lr": "0.001", "model.name": "cnn_lstm"})
    assert a == params_hash({"model.name": "cnn_lstm", "train.lr": "0.001"})
    assert a != params_hash({"model.name": "cnn_lstm", "train.lr": "0.002"})
    assert len(a) == 12 and int(a, 16) >= 0


# --- make dashboard ------------------------------------------------------------------------


def test_dashboard_storage_is_the_tune_storage_of_params_yaml(tmp_path) -> None:
    from deepvs30.tune import STORAGE_ENV as TUNE_ENV

    assert STORAGE_ENV == TUNE_ENV
    params = {"tune": {"storage": "sqlite:///elsewhere.db"}}
    assert study_storage(params, environ={}) == "sqlite:///elsewhere.db"
    assert study_storage(params, environ={STORAGE_ENV: "sqlite:///env.db"}) == "sqlite:///env.db"

    (tmp_path / "params.yaml").write_text("tune:\n  storage: sqlite:///study_x.db\n")
    env = {k: v for k, v in os.environ.items() if k != STORAGE_ENV}
    makefile = Path(__file__).resolve().parents[1] / "Makefile"
    done = subprocess.run(  # -o: the venv stamp counts as made, so -n lists the dashboard only
        ["make", "-s", "-n", "-f", str(makefile), "-o", ".venv/.installed-stamp", "dashboard",
         f"BIN={Path(sys.executable).parent}"],
        cwd=tmp_path, capture_output=True, text=True, env=env, check=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip().splitlines()[-1] == (
        'optuna-dashboard --host 127.0.0.1 --port 8080 "sqlite:///study_x.db"'
    )
