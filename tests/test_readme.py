"""The README's headline figures are the committed ``headline.json`` (written by
`make headline`), measured on the committed corpus (data.dvc)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from deepvs30.experiments import HEADLINE_JSON, headline_table

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- headline: make headline -->\n(.*?)<!-- /headline -->", re.S)


def _summary() -> dict:
    return json.loads((REPO / HEADLINE_JSON).read_text())


def test_readme_headline_table_is_the_committed_headline_json():
    match = BLOCK.search((REPO / "README.md").read_text())
    assert match, "README.md has no headline block"
    assert match.group(1) == headline_table(_summary())


def test_headline_was_measured_on_the_committed_corpus_over_three_seeds():
    summary = _summary()
    pinned = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]["md5"]
    assert summary["data_version"] == f"dvc:{pinned}"
    assert len(summary["seeds"]) == 3
    assert summary["pipeline"]["station_mape_pct"]["sd"] > 0  # three different trainings


KEYS = ("mape_pct", "bias_ln", "std_ln", "r2_ln", "pearson_r_ln", "pred_std_ln")


def test_headline_table_renders_mean_and_sd():
    summary: dict = {"seeds": [1, 2], "test_stations": 5}
    for arm in ("pipeline", "baseline_hv", "baseline_median"):
        summary[arm] = {f"station_{k}": {"mean": -0.5, "sd": 0.25} for k in KEYS}
    table = headline_table(summary).splitlines()
    assert table[0].startswith("| station level, 5 test stations | MAPE % |")
    assert table[2].startswith("| CNN-LSTM (params.yaml), 2 seeds | −0.5 ± 0.2 | −0.500 ± 0.250 |")
    median = "| training median baseline | −0.5 | −0.500 | −0.500 | −0.50 | −0.50 | −0.50 |"
    assert table[4] == median
