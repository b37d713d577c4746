"""Transfer learning: freezing, lr groups, warm-up, grown inputs, pretext pre-training,
lineage through the MLflow registry, and the quick mode of one experiment."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from deepvs30.inference import ModelBundle
from deepvs30.prepare import PrepareParams, prepare
from deepvs30.segment import FeatureParams
from deepvs30.train import ModelParams, TrainParams, fit
from deepvs30.transfer import (
    TransferParams,
    apply_transfer,
    block_of,
    load_matching,
    transfer_search_space,
)

FEATURES = FeatureParams(window_s=20.0)
MODEL = ModelParams(name="cnn_lstm", hparams={"conv_channels": 8, "lstm_hidden": 8})


@pytest.fixture(scope="module")
def prepared(tiny_dataset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared")
    prepare(tiny_dataset, out, PrepareParams())
    return out


def _train(tmp_path: Path, **kw) -> TrainParams:
    base = TrainParams(
        epochs=1,
        batch_size=16,
        num_threads=1,
        patience=10,
        out=str(tmp_path / "model"),
        checkpoint=str(tmp_path / "ckpt.pt"),
    )
    return replace(base, **kw)


@pytest.fixture(scope="module")
def source(prepared, tmp_path_factory) -> ModelBundle:
    tmp = tmp_path_factory.mktemp("source")
    return fit(prepared, FEATURES, MODEL, _train(tmp), progress=False).bundle


def _state(bundle: ModelBundle) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in bundle.network.state_dict().items()}


def _same(a: dict, b: dict, prefix: tuple[str, ...]) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys
    return all(torch.equal(a[k], b[k]) for k in keys)


def test_freeze_keeps_frozen_blocks_bit_identical(prepared, source, tmp_path):
    before = _state(source)
    tuned = fit(
        prepared,
        FEATURES,
        MODEL,
        _train(tmp_path),
        init=source,
        progress=False,
        transfer=TransferParams(freeze="cnn_lstm"),
    )
    after = _state(tuned.bundle)
    # weights and batch-norm running statistics of extractor + LSTM unchanged, head trained
    assert _same(before, after, ("features.", "lstm."))
    assert not _same(before, after, ("head.",))


def test_freeze_cnn_trains_the_lstm(prepared, source, tmp_path):
    before = _state(source)
    tuned = fit(
        prepared,
        FEATURES,
        MODEL,
        _train(tmp_path),
        init=source,
        progress=False,
        transfer=TransferParams(freeze="cnn", warmup_epochs=0),  # 1 epoch: no head-only warm-up
    )
    after = _state(tuned.bundle)
    assert _same(before, after, ("features.",))
    assert not _same(before, after, ("lstm.",))


def test_lr_multiplier_builds_param_groups(source):
    net = ModelBundle.build_network(MODEL.name, MODEL.hparams, FEATURES, 100.0)
    plan = apply_transfer(net, source, TransferParams(freeze="cnn", pretrained_lr_mult=0.1), 1e-3)
    groups = {g["name"]: g for g in plan.param_groups}
    assert set(groups) == {"head", "pretrained"}
    assert groups["head"]["lr"] == pytest.approx(1e-3)
    assert groups["pretrained"]["lr"] == pytest.approx(1e-4)
    names = {id(p): n for n, p in net.named_parameters()}
    assert {names[id(p)].split(".")[0] for p in groups["pretrained"]["params"]} == {"lstm"}
    assert {names[id(p)].split(".")[0] for p in groups["head"]["params"]} == {"head"}
    assert all(n.startswith("features.") for n in plan.frozen)
    assert not any(p.requires_grad for n, p in net.named_parameters() if n in plan.frozen)


def test_block_mapping_per_family():
    assert block_of("cnn", "features.net.0.weight") == "extractor"
    assert block_of("lstm", "embed.net.0.weight") == "extractor"
    assert block_of("lstm", "lstm.weight_ih_l0") == "sequence"
    assert block_of("transformer", "encoder.layers.0.linear1.weight") == "sequence"
    assert block_of("transformer", "head.net.0.weight") == "head"
    space = transfer_search_space()
    assert set(space) == {"freeze", "pretrained_lr_mult", "warmup_epochs", "refit_normaliser"}
    replace(
        TransferParams(),
        **{k: v[1][0] if v[0] == "categorical" else v[1] for k, v in space.items()},
    )  # every key is a field


def test_warmup_trains_only_the_head(prepared, source, tmp_path):
    before = _state(source)
    tuned = fit(
        prepared,
        FEATURES,
        MODEL,
        _train(tmp_path, epochs=2),
        init=source,
        progress=False,
        transfer=TransferParams(warmup_epochs=2),
    )
    after = _state(tuned.bundle)
    assert _same(before, after, ("features.", "lstm."))
    assert not _same(before, after, ("head.",))
    # after the warm-up every block trains again
    net = ModelBundle.build_network(MODEL.name, MODEL.hparams, FEATURES, 100.0)
    plan = apply_transfer(net, source, TransferParams(warmup_epochs=1), 1e-3)
    trainable = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert trainable == {"head"}
    plan.start_epoch(2)
    assert all(p.requires_grad for p in net.parameters())


def test_grown_input_channel_is_zero_initialised(prepared, tmp_path):
    no_ps = replace(FEATURES, ps_channel=False)
    src = fit(prepared, no_ps, MODEL, _train(tmp_path / "a"), progress=False).bundle
    net = ModelBundle.build_network(MODEL.name, MODEL.hparams, FEATURES, 100.0)
    report = load_matching(net, src.network)
    assert report.grown == ["features.net.0.weight"] and not report.skipped
    w_src, w = src.network.features.net[0].weight, net.features.net[0].weight
    assert torch.equal(w[:, :3], w_src) and torch.count_nonzero(w[:, 3]) == 0
    x = torch.randn(4, 4, 2000)
    x[:, 3] = (torch.rand(4, 2000) > 0.5).float()
    src.network.eval(), net.eval()
    assert torch.allclose(net(x), src.network(x[:, :3]), atol=1e-6)
    # through fit: a model with another head width loads the conv stack, skips the rest
    wide = ModelParams(MODEL.name, {**MODEL.hparams, "head_hidden": 16})
    tuned = fit(
        prepared,
        FEATURES,
        wide,
        _train(tmp_path / "b"),
        init=src,
        progress=False,
        transfer=TransferParams(freeze="cnn"),
    )
    assert tuned.bundle.network.head.net[0].out_features == 16


def test_pretrain_learns_sp_time_and_fine_tunes(prepared, tmp_path):
    from deepvs30.pretrain import PretrainParams, pretrain

    params = PretrainParams(
        targets=["sp_time"], epochs=8, batch_size=16, lr=3e-3, num_threads=1, patience=8
    )
    result = pretrain(prepared, FEATURES, MODEL, params)
    losses = [row["val_loss"] for row in result.history]
    assert min(losses[-3:]) < losses[0]
    val = result.val_metrics
    assert val["val_sp_time_mae"] < 0.9 * val["val_sp_time_mae_mean_predictor"]
    assert result.bundle.features.ps_channel is False  # no P/S channel while pre-training
    loaded = ModelBundle.load(result.bundle.save(tmp_path / "pre"))
    tuned = fit(
        prepared,
        FEATURES,
        MODEL,
        _train(tmp_path),
        init=loaded,
        progress=False,
        transfer=TransferParams(pretrained_lr_mult=0.3),
    )
    assert tuned.bundle.features.in_channels == 4


def _params_file(tmp_path: Path, prepared: Path) -> Path:
    params = {
        "data": {"path": str(tmp_path / "data")},
        "prepare": {"out": str(prepared)},
        "features": {"window_s": 20.0},
        "model": {"name": MODEL.name, "hparams": MODEL.hparams},
        "train": {
            "epochs": 1,
            "batch_size": 16,
            "num_threads": 1,
            "out": str(tmp_path / "tuned"),
            "checkpoint": str(tmp_path / "ck.pt"),
        },
        "transfer": {
            "init_from": None,
            "freeze": "cnn",
            "pretrained_lr_mult": 0.5,
            "warmup_epochs": 0,
            "refit_normaliser": False,
        },
        "mlflow": {
            "experiment": "t",
            "registered_model": "vs30",
            "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "artifact_root": str(tmp_path / "mlruns"),
        },
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_init_from_registry_alias_records_lineage(prepared, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from deepvs30.cli import main
    from deepvs30.register import register_model
    from deepvs30.tracking import MlflowParams
    from deepvs30.train import train_and_log

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    params_file = _params_file(tmp_path, prepared)
    mlflow_params = MlflowParams(**yaml.safe_load(params_file.read_text())["mlflow"])
    train_and_log(
        prepared,
        FEATURES,
        MODEL,
        _train(tmp_path / "src"),
        mlflow_params,
        tmp_path / "data",
        tmp_path / "src",
    )
    first = register_model(tmp_path / "src", None, mlflow_params, extra_tags={})
    assert "champion" in first["aliases"]

    uri = "models:/vs30@champion"
    assert main(["--params", str(params_file), "train", "--init-from", uri]) == 0
    run_info = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert run_info["parent_model_uri"] == uri
    run = MlflowClient().get_run(run_info["run_id"])
    assert run.data.tags["parent_model_uri"] == uri
    assert run.data.params["transfer.freeze"] == "cnn"
    second = register_model(tmp_path / "tuned", None, mlflow_params, extra_tags={})
    version = MlflowClient().get_model_version("vs30", str(second["version"]))
    assert version.tags["parent_model_uri"] == uri


def test_experiment_quick_mode_end_to_end(tmp_path, monkeypatch):
    import mlflow

    from deepvs30.experiments import run_experiment

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    from deepvs30.config import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    table = run_experiment("ps_ablation", tmp_path / "exp", quick=True, params=params)
    assert {"scratch_ps", "pretext_finetune_ps", "scratch_no_ps"} <= set(table["arm"])
    assert (tmp_path / "exp" / "ps_ablation_quick.csv").is_file()
    assert (tmp_path / "exp" / "ps_ablation_quick.png").is_file()
    runs = mlflow.search_runs(experiment_names=["deepvs30-experiments"])
    assert (runs["tags.mlflow.runName"] == "exp-ps_ablation-quick").sum() == 1
    tuned = runs[runs["tags.mlflow.runName"] == "pretext_finetune_ps"]
    pretext = json.loads(
        (tmp_path / "exp" / "work" / "runs" / "seed0" / "pretext" / "run.json").read_text()
    )
    assert (tuned["tags.parent_model_uri"] == pretext["model_uri"]).all()


def test_fine_tuning_keeps_its_start_when_training_only_makes_it_worse(
    prepared, source, tmp_path
) -> None:
    """A learning rate that wrecks the weights: fit returns the starting model (epoch 0),
    its predictions unchanged; a sane one returns the trained epochs."""
    import numpy as np

    from deepvs30.train import predict_dataset
    from deepvs30.windows import WindowDataset

    wrecked = fit(prepared, FEATURES, MODEL, _train(tmp_path / "a", epochs=2, lr=50.0),
                  init=source, progress=False, transfer=TransferParams(warmup_epochs=0,
                  pretrained_lr_mult=1.0))  # fmt: skip
    assert wrecked.best_epoch == 0
    assert wrecked.bundle.network is not source.network  # a copy, not the caller's model
    import pandas as pd

    records = pd.read_csv(prepared / "records.csv")
    waves = np.load(prepared / "waveforms.npy", mmap_mode="r")
    val = records[records["split"] == "val"].reset_index(drop=True)
    got = predict_dataset(wrecked.bundle, WindowDataset(waves, val, 100.0, FEATURES,
                                                        wrecked.bundle.normaliser))  # fmt: skip
    want = predict_dataset(source, WindowDataset(waves, val, 100.0, FEATURES, source.normaliser))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
