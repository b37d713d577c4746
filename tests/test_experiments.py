"""`make exp-rivals` on the pipeline's own prepared data: every arm trained and scored on the
same station-disjoint test split."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_rivals_quick_trains_every_arm_on_the_pipeline_split(tmp_path, monkeypatch, tiny_dataset):
    from deepvs30.experiments import run_experiment
    from deepvs30.prepare import PrepareParams, prepare

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["features"]["window_s"] = 12.0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(tiny_dataset, tmp_path / "data")
    prepare(tmp_path / "data", tmp_path / "prepared", PrepareParams())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")

    table = run_experiment("rivals", tmp_path / "exp", quick=True).set_index("arm")
    assert list(table.index) == ["cnn_lstm", "no_ps_channel", "cnn", "lstm", "transformer"]
    assert not table.loc["no_ps_channel", "ps_channel"] and table.loc["cnn", "ps_channel"]
    assert table["test_stations"].nunique() == 1  # one split for every arm
    assert np.isfinite(table["station_mape_pct"]).all()
    assert (table["best_epoch"] <= 2).all()  # --quick: 2 epochs
    assert (tmp_path / "exp" / "rivals_quick.png").stat().st_size > 5000
