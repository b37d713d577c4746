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


def test_summary_over_seeds_gives_mean_and_spread_per_arm():
    import pandas as pd

    from deepvs30.experiments import make_setup, summarise

    table = pd.DataFrame(
        {
            "arm": ["a", "b", "a", "b", "pretext"],
            "seed": [42, 42, 43, 43, 42],
            "station_mape_pct": [10.0, 30.0, 14.0, 30.0, None],  # pretext: no Vs30 score
            "station_pearson_r_ln": [0.9, 0.1, 0.7, 0.3, None],
            "pred_std_ln": [0.5, 0.1, 0.3, 0.1, None],
        }
    )
    summary = summarise(table).set_index("arm")
    assert list(summary.index) == ["a", "b"]
    assert summary.loc["a", "station_mape_pct_mean"] == 12.0
    assert summary.loc["a", "station_mape_pct_sd"] == round(np.std([10.0, 14.0], ddof=1), 3)
    assert summary.loc["b", "station_mape_pct_sd"] == 0.0
    assert summary.loc["a", "station_pearson_r_ln_mean"] == 0.8
    assert (summary["seeds"] == 2).all()
    assert make_setup("x", quick=False).seeds == 3 and make_setup("x", quick=True).seeds == 1
    assert make_setup("x", quick=True, seeds=2).seeds == 2


def test_derived_split_follows_its_source_corpus(tmp_path):
    import pandas as pd

    from deepvs30.split import derive_split

    for name, n in (("small", 2), ("large", 3)):
        src = tmp_path / name
        src.mkdir()
        pd.DataFrame({"station": [f"S{i}" for i in range(n)], "split": "train"}).to_csv(
            src / "records.csv", index=False
        )
        for file in ("prepare.json", "stations.csv"):
            (src / file).write_text(name)
        np.save(src / "waveforms.npy", np.zeros((n, 3, 4), dtype=np.float32))
        out = derive_split(src, tmp_path / "derived", lambda r: r["station"].eq("S0").map(
            {True: "test", False: "train"}))  # fmt: skip
    assert np.load(out / "waveforms.npy").shape[0] == 3  # not the cached small corpus
    assert pd.read_csv(out / "records.csv")["split"].tolist() == ["test", "train", "train"]
