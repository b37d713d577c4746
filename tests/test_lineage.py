"""A model records what it was trained on, and every scorer refuses to score it on those
stations: the overlaps here are real ones, made the way a user would make them (the same data
prepared with another split seed; a model fine-tuned from one that saw the test stations)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from deepvs30 import tracking
from deepvs30.errors import LeakageError
from deepvs30.evaluate import evaluate
from deepvs30.inference import ModelBundle
from deepvs30.prepare import PrepareParams, load_prepared, prepare
from deepvs30.realbench import predict_part, ridge_model
from deepvs30.segment import FeatureParams
from deepvs30.split import SplitParams, seen_stations
from deepvs30.train import ModelParams, TrainParams, fit

FEATURES = FeatureParams(window_s=10.0)
MODEL = ModelParams("cnn", {"conv_channels": 4, "n_conv_blocks": 2, "head_hidden": 8})


def _train(tmp: Path) -> TrainParams:
    return TrainParams(epochs=1, batch_size=16, num_threads=1, patience=2,
                       out=str(tmp / "model"), checkpoint=str(tmp / "ckpt.pt"))  # fmt: skip


def _stations(prepared: Path, part: str) -> set[str]:
    _, records, _ = load_prepared(prepared)
    return set(records.loc[records["split"] == part, "station"])


@pytest.fixture(scope="module")
def two_splits(tiny_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny dataset prepared twice: split seed 42 (the default) and split seed 7."""
    root = tmp_path_factory.mktemp("lineage")
    a, b = root / "prepared_42", root / "prepared_7"
    prepare(tiny_dataset, a, PrepareParams())
    prepare(tiny_dataset, b, PrepareParams(split=SplitParams(seed=7)))
    return a, b


@pytest.fixture(scope="module")
def model(two_splits, tmp_path_factory) -> ModelBundle:
    return fit(two_splits[0], FEATURES, MODEL, _train(tmp_path_factory.mktemp("m")),
               progress=False).bundle  # fmt: skip


def test_the_bundle_records_its_provenance_and_keeps_it(model, two_splits, tiny_dataset, tmp_path):
    prov = model.provenance
    assert set(prov["train_stations"]) == _stations(two_splits[0], "train")
    assert set(prov["val_stations"]) == _stations(two_splits[0], "val")
    assert prov["split_column"] == "split" and prov["split_seed"] == 42
    assert prov["data_version"] == tracking.data_version(tiny_dataset) != "unknown"
    assert prov["prepared_hash"].startswith("sha256:") and prov["inherited_stations"] == []
    assert ModelBundle.load(model.save(tmp_path / "bundle")).provenance == prov


def test_evaluate_scores_its_own_test_split(model, two_splits):
    train = TrainParams(num_threads=1)
    metrics = evaluate(model, two_splits[0], train, "test")["metrics"]
    assert metrics["n_stations"] == len(_stations(two_splits[0], "test"))


def test_evaluate_refuses_another_split_seed_naming_the_stations(model, two_splits):
    overlap = seen_stations(model.provenance) & _stations(two_splits[1], "test")
    assert overlap, "the two seeds should share stations between train and test"
    with pytest.raises(LeakageError, match=sorted(overlap)[0].replace(".", r"\.")) as info:
        evaluate(model, two_splits[1], TrainParams(num_threads=1), "test")
    assert f"{len(overlap)} of the stations" in str(info.value)


def test_a_fine_tuned_model_inherits_its_sources_stations(model, two_splits, tmp_path):
    tuned = fit(two_splits[1], FEATURES, MODEL, _train(tmp_path), init=model,
                progress=False).bundle  # fmt: skip
    assert set(tuned.provenance["inherited_stations"]) == seen_stations(model.provenance)
    assert set(tuned.provenance["train_stations"]) == _stations(two_splits[1], "train")
    # on its own target split's test stations it is still refused: its source saw some
    with pytest.raises(LeakageError):
        evaluate(tuned, two_splits[1], TrainParams(num_threads=1), "test")


def test_the_real_benchmark_refuses_a_model_on_stations_it_saw(two_splits):
    features = FeatureParams(segmentation="pga_centred", ps_channel=False, window_s=20.0,
                             hv_bins=8)  # fmt: skip
    ridge = ridge_model(two_splits[0], features)
    assert set(ridge.provenance["train_stations"]) == _stations(two_splits[0], "train")
    assert len(predict_part(ridge, two_splits[0], "test")) == len(_stations(two_splits[0], "test"))
    with pytest.raises(LeakageError, match="real benchmark prepared_7"):
        predict_part(ridge, two_splits[1], "test")


def test_data_version_names_the_data_used(tiny_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    version = tracking.data_version(data)
    assert version.startswith("dvc:") and version.endswith(".dir")
    md5 = version.removeprefix("dvc:")
    (tmp_path / "data.dvc").write_text(f"outs:\n- md5: {md5}\n  path: data\n")
    assert tracking.data_version(data) == version  # data/ matches data.dvc: its hash
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef.dir\n  path: data\n")
    assert tracking.data_version(data) == version  # data.dvc is stale: still the data used
    with (data / "metadata.csv").open("a") as f:
        f.write("\n")
    assert tracking.data_version(data) != version  # one byte more: another version


def test_data_version_is_the_hash_dvc_writes(tiny_dataset, tmp_path):
    import subprocess
    import sys

    import yaml

    shutil.copytree(tiny_dataset, tmp_path / "data")
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run([*dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*dvc, "add", "-q", "data"], cwd=tmp_path, check=True)
    pinned = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]["md5"]
    assert tracking.data_version(tmp_path / "data") == f"dvc:{pinned}"
