"""deepvs30 tune on SQLite: a tiny study end to end, pruning, a killed worker's trial re-run,
registration once, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    record = study.user_attrs[f"finalize.trial-{study.best_trial.number}"]
    assert record["registered"]["version"] == versions[0].version
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

    import optuna

    from deepvs30.tune import with_driver

    assert optuna.get_all_study_names(with_driver(params["tune"]["storage"])) == ["tiny"]


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


def test_killed_worker_trial_fails_by_heartbeat_and_reruns(workdir, prepared):
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
    killed = running[0]
    assert study_of(storage).trials[killed.number].state == TrialState.RUNNING  # left behind

    # the same study, resumed with short trials: the heartbeat (grace_s 6) fails the killed
    # trial and this worker re-runs it, with its parameters, as one of the 2 trials
    params = tiny_params(workdir, prepared, n_trials=2, max_epochs=1)
    assert _tune(params, "--no-finalize") == 0
    trials = study_of(storage).trials
    assert trials[killed.number].state == TrialState.FAIL
    assert trials[killed.number].intermediate_values  # recorded, not lost
    retries = [t for t in trials if _retry_of(t) == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == killed.params
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2
    assert len(trials) == 3
    parents, children, _ = mlflow_runs(params)
    assert len(parents) == 1  # the resumed study logs under the same parent
    assert len(children) == 3


def _retry_of(trial) -> int | None:
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


@contextmanager
def _beating(storage, trial_id: int) -> Iterator[None]:
    """The heartbeat of a trial whose worker is alive (another process, in the tests' terms)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            storage.record_heartbeat(trial_id)
            stop.wait(0.3)

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("max_retries", [1, 0])
def test_worker_waits_for_a_trial_elsewhere_and_reruns_it_when_silent(
    workdir, prepared, max_retries
):
    """One trial to go and it runs in another worker: this one waits instead of starting
    another; when that trial's heartbeat stops it is failed and re-run here with its
    parameters (with max_retries 0, a new trial takes its place)."""
    from optuna.trial import TrialState

    from deepvs30 import tune
    from deepvs30.search_space import sample

    params = tiny_params(
        workdir, prepared, n_trials=1, max_epochs=1, heartbeat_s=1, grace_s=2,
        max_retries=max_retries, enqueue_baseline=False,
    )  # fmt: skip
    setup = tune.load_setup(params)
    storage = tune.open_storage(setup.storage_url, setup.tune)
    study = tune.open_study(setup, storage)
    other = study.ask()
    sample(other, setup.space, setup.base)
    with _beating(storage, other._trial_id):
        t0 = time.monotonic()
        assert not tune.wait_for_room(study, setup.tune, time.monotonic() + 3)
        assert time.monotonic() - t0 >= 3  # it waited to its deadline, starting nothing
    assert study.trials[other.number].state == TrialState.RUNNING  # alive: left alone

    assert tune.wait_for_room(study, setup.tune, time.monotonic() + 60)  # silent: room
    ghost = study.trials[other.number]
    assert ghost.state == TrialState.FAIL
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.params for t in waiting] == ([ghost.params] if max_retries else [])

    assert _tune(params, "--no-finalize") == 0
    trials = study_of(params["tune"]["storage"]).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    if max_retries:
        assert trials[1].params == ghost.params
        assert _retry_of(trials[1]) == ghost.number
    else:
        assert _retry_of(trials[1]) is None


def test_finalize_waits_for_a_claim_unless_forced(workdir, prepared, capsys):
    from deepvs30 import tune

    params = tiny_params(workdir, prepared, n_trials=1, max_epochs=1)
    assert _tune(params, "--no-finalize") == 0
    setup = tune.load_setup(params)
    storage = tune.open_storage(setup.storage_url, setup.tune)
    study = tune.open_study(setup, storage)
    assert study.metric_names == [tune.OBJECTIVE]  # the dashboard names the objective
    key = f"finalize.trial-{study.best_trial.number}"
    assert tune.claim(storage, study, key, {"worker": "elsewhere:4242"})
    assert not tune.claim(storage, study, key, {"worker": "here:1"})  # taken: not overwritten
    assert study.user_attrs[key] == {"worker": "elsewhere:4242"}

    assert _tune(params, "--finalize") == 0
    assert "being finalized by elsewhere:4242" in capsys.readouterr().out
    assert not mlflow_runs(params)[2]
    assert _tune(params, "--finalize", "--force") == 0
    assert len(mlflow_runs(params)[2]) == 1
    assert "registered" in study_of(params["tune"]["storage"]).user_attrs[key]


def _claim_in_process(url: str, barrier, results) -> None:
    import optuna

    from deepvs30.tune import claim

    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    study = optuna.load_study(study_name="race", storage=storage)
    barrier.wait(timeout=60)
    results.put(claim(storage, study, "finalize.trial-0", os.getpid()))


def test_claim_succeeds_in_one_of_several_processes(tmp_path):
    """Four processes claim the same key at once: exactly one INSERT is accepted."""
    import multiprocessing

    import optuna

    url = f"sqlite:///{tmp_path / 'race.db'}"
    optuna.create_study(study_name="race", storage=url)
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(url, barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert sorted(outcomes) == [False, False, False, True]
    winner = optuna.load_study(study_name="race", storage=url).user_attrs["finalize.trial-0"]
    assert winner in {proc.pid for proc in procs}


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
    ({"max_retries": -1}, "tune.max_retries: must be at least 0"),
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
    assert len(parents) == 1 and len(children) == len(trials)
    assert len(versions) == 1  # the launcher finalizes once, after its workers exit
    assert result.stdout.count(f"-> {versions[0].name} version") == 1


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
