"""deepvs30 tune on SQLite: a tiny study end to end, pruning, resume after a kill, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from deepvs30.cli import main
from tune_helpers import (
    clean_env,
    make_prepared,
    mlflow_runs,
    run_cli,
    study_of,
    tiny_params,
    tune_cmd,
    write_params,
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    return make_prepared(tmp_path_factory.mktemp("tune_data"))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNE_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def _tune(params: dict, *args: str) -> int:
    return main(["--params", str(write_params(params)), "tune", *args])


def _metric_names(run) -> set[str]:
    return {k for k in run.data.metrics if not k.startswith("test.")}


def test_tiny_study_nested_runs_registered_once(workdir, prepared):
    from optuna.trial import TrialState

    params = tiny_params(workdir, prepared, n_trials=3)
    assert _tune(params) == 0

    study = study_of(params["tune"]["storage"])
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 3  # distinct proposals
    assert all(len(t.intermediate_values) == 2 for t in trials)  # reported every epoch

    parents, children, versions = mlflow_runs(params)
    assert len(parents) == 1 and len(children) == 3
    parent_id = parents[0].info.run_id
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent_id}
    assert len({c.info.run_name for c in children}) == 3
    assert len({frozenset(_metric_names(c)) for c in children}) == 1  # same metric names

    assert len(versions) == 1
    assert versions[0].tags["optuna_trial"] == str(study.best_trial.number)
    best_child = next(c for c in children if c.info.run_id == versions[0].run_id)
    assert "test.station.mape_pct" in best_child.data.metrics  # the test split, once, for it
    assert sum("test.station.mape_pct" in c.data.metrics for c in children) == 1

    from mlflow import MlflowClient

    plots = {a.path for a in MlflowClient().list_artifacts(parent_id, "plots")}
    assert {
        "plots/optimization_history.html",
        "plots/optimization_history.png",
        "plots/parallel_coordinate.png",
    } <= plots
    assert parents[0].data.tags["best_trial"] == str(study.best_trial.number)

    # finalize again (and a rerun with all trials done): nothing new is registered
    assert _tune(params, "--finalize") == 0
    assert _tune(params) == 0
    assert len(mlflow_runs(params)[2]) == 1
    assert len(study_of(params["tune"]["storage"]).trials) == 3


def test_aggressive_pruner_stops_trials_early(workdir, prepared):
    from optuna.trial import TrialState

    params = tiny_params(
        workdir,
        prepared,
        n_trials=5,
        max_epochs=3,
        pruner={
            "name": "percentile",
            "percentile": 1.0,
            "n_startup_trials": 1,
            "n_warmup_steps": 0,
        },
    )
    assert _tune(params, "--no-finalize") == 0
    trials = study_of(params["tune"]["storage"]).get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(pruned) + len(complete) == 5
    assert pruned, "a 1st-percentile pruner must prune some of 4 trials after the first"
    assert all(len(t.intermediate_values) < 3 for t in pruned)

    _, children, versions = mlflow_runs(params)
    assert not versions  # --no-finalize
    by_state = {c.data.tags.get("optuna_state"): c for c in children}
    assert by_state["PRUNED"].info.status == "KILLED"
    assert _metric_names(by_state["PRUNED"]) == _metric_names(by_state["COMPLETE"])


def test_resume_after_kill_marks_running_trial_failed(workdir, prepared):
    from optuna.trial import TrialState

    # long trials (no early stop) so that the kill lands mid-trial
    params = tiny_params(workdir, prepared, n_trials=2, max_epochs=400)
    params["train"]["patience"] = 400
    proc = subprocess.Popen(
        tune_cmd(write_params(params)),
        cwd=workdir,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    storage = params["tune"]["storage"]
    deadline = time.time() + 120
    running = []
    while time.time() < deadline and not running:
        time.sleep(0.5)
        if proc.poll() is not None:
            pytest.fail("tune ended before it could be killed")
        try:
            trials = study_of(storage).get_trials(states=(TrialState.RUNNING,))
        except Exception:  # noqa: BLE001 - the study does not exist yet
            continue
        running = [t for t in trials if len(t.intermediate_values) >= 1]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert running, "no trial reached its first epoch in time"
    killed = running[0].number
    assert study_of(storage).trials[killed].state == TrialState.RUNNING  # left behind

    params = tiny_params(workdir, prepared, n_trials=2, max_epochs=1)
    assert _tune(params, "--no-finalize") == 0
    trials = study_of(storage).trials
    assert trials[killed].state == TrialState.FAIL
    assert "died" in trials[killed].user_attrs["fail_reason"]
    assert trials[killed].intermediate_values  # recorded, not lost
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    parents, children, _ = mlflow_runs(params)
    assert len(parents) == 1  # the resumed study logs under the same parent
    assert len(children) == 3


def test_stale_heartbeat_of_another_host_fails_trial(workdir, prepared):
    from optuna.trial import TrialState

    params = tiny_params(workdir, prepared, n_trials=1, max_epochs=1, heartbeat_s=1, grace_s=1)
    from deepvs30 import tune

    setup = tune.load_setup(params)
    study = tune.open_study(setup)
    ghost = study.ask()
    ghost.set_user_attr("worker", "elsewhere:00000000:4242")
    study._storage.record_heartbeat(ghost._trial_id)
    time.sleep(2.5)
    assert _tune(params, "--no-finalize") == 0
    trials = study_of(params["tune"]["storage"]).trials
    assert trials[ghost.number].state == TrialState.FAIL
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 1


BAD_INPUT = [
    ({"space": {"model": ["categorical", ["cnn", "resnet"]]}}, "unknown model 'resnet'"),
    ({"space": {"lr": ["float", 0.1, 0.01, "log"]}}, "low 0.1 must not exceed high 0.01"),
    ({"space": {"learning_rate": 0.01}}, "unknown key(s) ['learning_rate']"),
    ({"space": {"segmentation": ["categorical", ["p_centred", "middle"]]}}, "'middle'"),
    ({"space": {"window_s": ["float", 10, 20, "linear"]}}, "[float, low, high, log]"),
    ({"hparams": {"cnn": {"channels": 4}}}, "unknown size(s) ['channels']"),
    ({"transfer": {"search": True}}, "tune.transfer.init_from: a model URI"),
    ({"transfer": {"init_from": "m", "freeze": "all"}}, "transfer.freeze: 'all' is not one"),
    ({"transfer": {"init_from": "m", "frozen_blocks": "cnn"}}, "unknown key(s) ['frozen_blocks']"),
    ({"pruner": {"name": "asha"}}, "tune.pruner.name"),
    ({"storage": "redis://localhost"}, "is not a database URL"),
    ({"storage": "postgresql+nodriver://u@localhost/db"}, "cannot open"),
    ({"storage": "postgresql://tuner:s3cret@127.0.0.1:9/optuna"}, "cannot open"),
    ({"storage": "sqlite:////nonexistent/dir/optuna.db"}, "cannot open"),
]


@pytest.mark.parametrize(("tune_overrides", "message"), BAD_INPUT)
def test_bad_input_one_clear_message_before_any_trial(
    workdir, prepared, capsys, tune_overrides, message
):
    params = tiny_params(workdir, prepared, **tune_overrides)
    assert _tune(params) == 2
    err = capsys.readouterr().err
    assert err.startswith("deepvs30 tune: error:") and message in err
    assert err.count("\n") == 1
    assert "s3cret" not in err
    assert not (workdir / "mlruns").exists()
    assert not (workdir / "models").exists()


def test_two_local_workers_on_sqlite(workdir, prepared):
    """`make tune WORKERS=2`: two processes share optuna.db and mlflow.db without locking."""
    from optuna.trial import TrialState

    params = tiny_params(workdir, prepared, n_trials=4)
    result = run_cli(write_params(params), workdir, "--workers", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_of(params["tune"]["storage"]).trials
    workers = {t.user_attrs["worker"] for t in trials}
    assert 4 <= sum(t.state == TrialState.COMPLETE for t in trials) <= 5
    assert len(workers) == 2
    parents, children, versions = mlflow_runs(params)
    assert len(parents) == 1 and len(children) == len(trials) and len(versions) == 1


def test_transfer_options_sample_the_fine_tuning_space():
    import optuna

    from deepvs30.tune import transfer_options

    assert transfer_options(None, None) is None
    fixed = transfer_options(None, {"init_from": "models:/src@champion", "freeze": "cnn"})
    assert fixed.init_from == "models:/src@champion" and fixed.freeze == "cnn"
    trial = optuna.trial.FixedTrial(
        {
            "transfer.freeze": "cnn_lstm",
            "transfer.pretrained_lr_mult": 0.1,
            "transfer.warmup_epochs": 2,
            "transfer.refit_normaliser": False,
        }
    )
    got = transfer_options(trial, {"init_from": "models:/src@champion", "search": True})
    assert (got.freeze, got.pretrained_lr_mult, got.warmup_epochs, got.refit_normaliser) == (
        "cnn_lstm",
        0.1,
        2,
        False,
    )


def test_first_trial_is_the_pipeline_configuration(workdir, prepared):
    params = tiny_params(workdir, prepared, n_trials=2)
    params["features"].update(window_s=10.0, segmentation="s_start", ps_channel=False)
    params["train"].update(lr=2.0e-3, batch_size=16)
    sizes = {"conv_channels": 5, "n_conv_blocks": 3, "head_hidden": 8}  # TINY_HPARAMS fixes 2
    params["model"] = {"name": "cnn", "hparams": sizes}
    assert _tune(params) == 0

    trials = study_of(params["tune"]["storage"]).get_trials()
    assert trials[0].user_attrs["baseline"] is True and "baseline" not in trials[1].user_attrs
    assert trials[0].params == {
        "model": "cnn",
        "lr": 2.0e-3,
        "segmentation": "s_start",
        "ps_channel": False,
        "cnn.conv_channels": 5,
        "cnn.kernel_size": 7,  # cnn defaults, in the cnn search space
        "cnn.downsample": 64,
        "cnn.dropout": 0.1,
    }
    _, children, _ = mlflow_runs(params)
    tags = {c.data.tags["optuna_trial"]: c.data.tags["baseline"] for c in children}
    assert tags == {"0": "true", "1": "false"}
    best = json.loads((workdir / "models/tune/tiny/best/best_trial.json").read_text())
    assert best["baseline_val_station_mape"] == trials[0].value
    assert best["epochs_run"] == 4 and best["epochs_unpruned"] == 4


def test_repository_defaults_are_a_trial_of_the_default_space():
    """`make tune` measures the search against the pipeline's configuration only if that
    configuration lies inside tune.space (else it is not enqueued)."""
    import yaml

    from deepvs30.search_space import baseline_params
    from deepvs30.tune import load_setup

    params = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    params["prepare"]["out"] = str(Path(__file__).parent)  # any existing folder
    setup = load_setup(params)
    values, outside = baseline_params(setup.space, setup.base)
    assert outside == []
    assert values["model"] == params["model"]["name"]
    assert values["window_s"] == params["features"]["window_s"]


def test_baseline_outside_the_space_is_named():
    from deepvs30.search_space import Trial, baseline_params, parse_space
    from deepvs30.segment import FeatureParams
    from deepvs30.train import ModelParams, TrainParams

    space = parse_space(
        {"model": ["categorical", ["cnn"]], "window_s": ["categorical", [20.0, 30.0]]},
        {"cnn": {"conv_channels": ["int", 8, 16], "kernel_size": 5}},
        True,
        "tune",
    )
    base = Trial(FeatureParams(window_s=40.0), ModelParams("cnn", {}), TrainParams())
    _, outside = baseline_params(space, base)
    assert outside == ["window_s: 40.0", "cnn.kernel_size: 7 (the space fixes 5)"]
