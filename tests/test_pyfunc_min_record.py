"""The served model skips records shorter than its training data's shortest records: the
threshold is prepare.min_record_s of the prepared folder it was trained on, stored in the
bundle, not a constant in pyfunc.py."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.inference import CONFIG, LEGACY_MIN_RECORD_S, ModelBundle
from deepvs30.prepare import PrepareParams, prepare
from deepvs30.pyfunc import predict_frame
from deepvs30.segment import FeatureParams
from deepvs30.train import ModelParams, TrainParams, fit

FS_HZ = 100.0
MIN_RECORD_S = 12.5  # not prepare's default (10 s): the bundle must carry this one
FEATURES = FeatureParams(window_s=10.0)
MODEL = ModelParams("cnn", {"conv_channels": 4, "n_conv_blocks": 2, "head_hidden": 8})


@pytest.fixture(scope="module")
def bundle(tiny_dataset, tmp_path_factory) -> ModelBundle:
    root = tmp_path_factory.mktemp("min_record")
    prepared = root / "prepared"
    prepare(tiny_dataset, prepared, PrepareParams(min_record_s=MIN_RECORD_S))
    train = TrainParams(epochs=1, batch_size=16, num_threads=1, patience=2,
                        out=str(root / "model"), checkpoint=str(root / "ckpt.pt"))  # fmt: skip
    return fit(prepared, FEATURES, MODEL, train, progress=False).bundle


def record_row(record_id: str, duration_s: float) -> dict:
    """A decaying noise burst with P at 3 s and S at 5 s."""
    rng = np.random.default_rng(0)
    t = np.arange(int(duration_s * FS_HZ)) / FS_HZ
    envelope = np.where(t > 3, np.exp(-(t - 3) / 4), 0.0)
    comps = {c: 0.01 * envelope * rng.standard_normal(t.size) for c in "zne"}
    return {"record_id": record_id, "station": "XX.TEST", "sampling_rate_hz": FS_HZ,
            "p_arrival_s": 3.0, "s_arrival_s": 5.0, **comps}  # fmt: skip


def skipped_by_id(bundle: ModelBundle, durations_s: dict[str, float]) -> dict[str, str]:
    frame = pd.DataFrame([record_row(rid, s) for rid, s in durations_s.items()])
    return predict_frame(bundle, frame).set_index("record_id")["skipped"].to_dict()


def test_the_bundle_stores_prepares_min_record_s(bundle, tmp_path) -> None:
    assert bundle.min_record_s == MIN_RECORD_S
    saved = bundle.save(tmp_path / "bundle")
    assert json.loads((saved / CONFIG).read_text())["min_record_s"] == MIN_RECORD_S
    assert ModelBundle.load(saved).min_record_s == MIN_RECORD_S


def test_the_served_model_skips_records_shorter_than_its_bundles_min_record_s(bundle) -> None:
    skipped = skipped_by_id(bundle, {"short": 12.0, "long": 13.0})
    assert skipped["short"] == "record is 12 s long, shorter than 12.5 s"
    assert skipped["long"] == ""
    assert skipped_by_id(replace(bundle, min_record_s=11.0), {"short": 12.0})["short"] == ""


def test_a_bundle_saved_before_min_record_s_was_stored_keeps_the_old_10_s(bundle, tmp_path) -> None:
    saved = bundle.save(tmp_path / "old")
    config = json.loads((saved / CONFIG).read_text())
    del config["min_record_s"]
    Path(saved / CONFIG).write_text(json.dumps(config))
    old = ModelBundle.load(saved)
    assert old.min_record_s == LEGACY_MIN_RECORD_S == 10.0
    skipped = skipped_by_id(old, {"short": 9.5, "long": 12.0})
    assert "shorter than 10 s" in skipped["short"] and skipped["long"] == ""
