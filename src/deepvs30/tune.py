"""tune stage: one Optuna study over model families, sizes, segmentation and training settings.

Each trial is ``train.train_and_log`` as a nested MLflow run under one parent run per study
(found again by its tags, so resumed runs and other workers log under the same parent). The
objective is the validation station MAPE of the kept (best validation loss) epoch; the
per-epoch validation station MAPE is reported so that the pruner can stop bad trials. The
test split is never looked at during the search: the best trial's bundle is evaluated on it
once, in ``finalize``, and registered as a new model version.

Several workers (``--workers N`` locally, or ``deepvs30 tune`` on any number of machines with
``TUNE_STORAGE`` and ``MLFLOW_TRACKING_URI`` pointing at shared servers) share one storage, an
Optuna ``RDBStorage`` (SQLite or PostgreSQL/MySQL) with Optuna's heartbeat:

- ``n_trials`` counts finished (complete or pruned) trials of the whole study. A worker starts
  a trial while finished plus running trials are fewer; when the rest are running elsewhere it
  waits for them, so that it can re-run one whose worker dies.
- A running trial writes a heartbeat every ``heartbeat_s``; one silent for ``grace_s`` (its
  worker was killed) is marked FAIL by ``optuna.storages.fail_stale_trials`` (before every
  trial, and while a worker waits) and queued again with the same parameters by
  ``RetryHeartbeatStaleTrialCallback``, at most ``max_retries`` times.
- Finalisation runs once per best trial: ``--workers N`` finalizes in the launcher after its
  workers exit; independent workers each try, and only the one whose claim (an INSERT of the
  study user attr ``finalize.trial-<n>``, unique in the storage) succeeds goes on.

What is reproducible. The sampler of trial ``n`` is seeded with ``seed + n`` (a fresh TPE or
random sampler per trial), and every trial trains with ``train.seed``. With one worker a
study run again from scratch proposes the same parameters and, at a fixed thread count, gets
the same values; a resumed study never replays earlier proposals; a re-run trial has its
original's parameters and seed (so, at the same thread count, its result). With N workers
which trial number a worker gets, and so the history each proposal sees, depends on timing:
the proposals, the best trial and the study's path are not reproducible, only each trial's
training given its parameters (and parallel workers never propose the same startup trials).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from deepvs30 import threads
from deepvs30.config import data_path, from_dict, section
from deepvs30.errors import ConfigError, DeepVs30Error
from deepvs30.prepare import PrepareParams
from deepvs30.search_space import (
    Space,
    Trial,
    baseline_params,
    check_space,
    parse_entry,
    parse_space,
    sample,
    suggest,
)
from deepvs30.segment import FeatureParams
from deepvs30.tracking import MlflowParams, configure, flatten
from deepvs30.train import ModelParams, TrainParams
from deepvs30.transfer import TransferParams, transfer_search_space

log = logging.getLogger(__name__)

STORAGE_ENV = "TUNE_STORAGE"
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
OBJECTIVE = "val_station_mape"
PARENT_ROLE, TRIAL_ROLE = "tune_parent", "tune_trial"
TRIAL_ERRORS: tuple[type[Exception], ...] = (DeepVs30Error, RuntimeError, ValueError)


# --- parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class SamplerParams:
    name: str = "tpe"  # tpe | random
    seed: int = 42
    n_startup_trials: int = 10  # random trials before TPE models the history


@dataclass(frozen=True)
class PrunerParams:
    name: str = "median"  # median | percentile | hyperband | none
    n_startup_trials: int = 5  # median/percentile: trials finished before pruning starts
    n_warmup_steps: int = 2  # median/percentile: first epoch at which a trial can be pruned
    percentile: float = 50.0  # percentile: prune below this percentile (50 = median)
    min_resource: int = 1  # hyperband: epochs of the smallest rung
    reduction_factor: int = 3  # hyperband


def default_space() -> dict[str, Any]:
    """params.yaml's ``tune.space`` (tests/test_params_defaults.py keeps the two equal)."""
    return {
        "model": ["categorical", ["cnn_lstm", "cnn", "lstm", "transformer"]],
        "lr": ["float", 1.0e-4, 3.0e-3, "log"],
        "batch_size": ["categorical", [16, 32, 64]],
        "segmentation": ["categorical", ["p_centred", "pga_centred", "s_start", "whole"]],
        "window_s": ["categorical", [20.0, 30.0, 40.0]],
        "ps_channel": ["categorical", [True, False]],
        "representation": ["categorical", ["waveform", "spectrogram"]],
    }


def default_hparams() -> dict[str, Any]:
    """params.yaml's ``tune.hparams``: per-family overrides of ``models.search_space`` that
    keep a trial under ~25 s per epoch on 2 CPU cores (docs/tuning.md)."""
    kernel, downsample = ["categorical", [5, 7, 9]], ["categorical", [32, 64]]
    patch = ["categorical", [32, 64]]
    return {
        "cnn_lstm": {"conv_channels": ["int", 8, 32, "log"], "n_conv_blocks": ["int", 3, 5],
                     "kernel_size": kernel, "downsample": downsample,
                     "lstm_hidden": ["int", 16, 64, "log"], "lstm_layers": 1},
        "cnn": {"conv_channels": ["int", 8, 32, "log"], "kernel_size": kernel,
                "downsample": downsample},
        "lstm": {"patch_size": patch, "lstm_hidden": ["int", 16, 96, "log"]},
        "transformer": {"patch_size": patch, "d_model": ["categorical", [16, 32, 48]],
                        "n_layers": ["int", 1, 3], "ff_mult": 2},
    }  # fmt: skip


@dataclass(frozen=True)
class TuneParams:
    """The ``tune:`` section of params.yaml; the defaults are its values."""

    study_name: str = "deepvs30-search"
    n_trials: int = 30
    timeout_s: float | None = None
    max_epochs: int = 25
    storage: str = "sqlite:///optuna.db"
    heartbeat_s: int = 60
    grace_s: int = 180
    max_retries: int = 3
    out: str = "models/tune"
    sampler: SamplerParams = field(default_factory=SamplerParams)
    pruner: PrunerParams = field(default_factory=PrunerParams)
    space: dict[str, Any] = field(default_factory=default_space)
    search_hparams: bool = True
    hparams: dict[str, Any] = field(default_factory=default_hparams)
    transfer: dict[str, Any] | None = None
    enqueue_baseline: bool = True  # trial 0 of a new study trains the pipeline's configuration


@dataclass(frozen=True)
class Setup:
    """Everything a worker needs, read once from params.yaml and checked before any trial."""

    tune: TuneParams
    space: Space
    base: Trial
    prepared_dir: str
    data_dir: str
    mlflow: MlflowParams
    storage_url: str
    params_path: str

    @property
    def study_dir(self) -> Path:
        return Path(self.tune.out) / self.tune.study_name


def load_setup(params: dict, args: argparse.Namespace | None = None) -> Setup:
    tune = section(params, "tune", TuneParams)
    if args is not None:
        tune = replace(
            tune,
            study_name=args.study or tune.study_name,
            n_trials=args.n_trials if args.n_trials is not None else tune.n_trials,
            timeout_s=args.timeout_s if args.timeout_s is not None else tune.timeout_s,
        )
    check_tune(tune)
    base = Trial(
        section(params, "features", FeatureParams),
        section(params, "model", ModelParams),
        section(params, "train", TrainParams),
    )
    space = parse_space(tune.space, tune.hparams, tune.search_hparams, "tune")
    check_space(space, base, "tune")
    prepared = getattr(args, "prepared", None) or section(params, "prepare", PrepareParams).out
    if not Path(prepared).is_dir():
        raise ConfigError(f"{prepared}: prepared folder not found; run `deepvs30 prepare` first")
    return Setup(
        tune=tune,
        space=space,
        base=base,
        prepared_dir=str(prepared),
        data_dir=data_path(params),
        mlflow=section(params, "mlflow", MlflowParams),
        storage_url=os.environ.get(STORAGE_ENV) or tune.storage,
        params_path=params.get("__path__", "params.yaml"),
    )


def check_tune(tune: TuneParams) -> None:
    if not STUDY_NAME.match(tune.study_name):
        raise ConfigError(
            f"tune.study_name: {tune.study_name!r} must be letters, digits, '_', '.' or '-'"
        )
    for key in ("n_trials", "max_epochs", "heartbeat_s", "grace_s"):
        if getattr(tune, key) < 1:
            raise ConfigError(f"tune.{key}: must be at least 1, got {getattr(tune, key)}")
    if tune.max_retries < 0:
        raise ConfigError(f"tune.max_retries: must be at least 0, got {tune.max_retries}")
    if tune.timeout_s is not None and tune.timeout_s <= 0:
        raise ConfigError(f"tune.timeout_s: must be positive or null, got {tune.timeout_s}")
    if tune.sampler.name not in ("tpe", "random"):
        raise ConfigError(f"tune.sampler.name: {tune.sampler.name!r} is not one of tpe, random")
    pruners = ("median", "percentile", "hyperband", "none")
    if tune.pruner.name not in pruners:
        raise ConfigError(f"tune.pruner.name: {tune.pruner.name!r} is not one of {list(pruners)}")
    if not 0 < tune.pruner.percentile <= 100:
        raise ConfigError(
            f"tune.pruner.percentile: must be in (0, 100], got {tune.pruner.percentile}"
        )
    if tune.transfer:
        transfer_base(tune.transfer)  # raises ConfigError on a bad entry


TRANSFER_SEARCH_KEY = "search"


def transfer_base(transfer: dict) -> TransferParams:
    """``tune.transfer``: ``init_from`` (a model URI or bundle folder every trial fine-tunes
    from), ``search: true`` to sample the fine-tuning options of
    :func:`deepvs30.transfer.transfer_search_space`, and fixed TransferParams values."""
    fixed = {k: v for k, v in transfer.items() if k != TRANSFER_SEARCH_KEY}
    params = from_dict(fixed, TransferParams, "tune.transfer")
    if not params.init_from:
        raise ConfigError("tune.transfer.init_from: a model URI or bundle folder is required")
    if not isinstance(transfer.get(TRANSFER_SEARCH_KEY, False), bool):
        raise ConfigError("tune.transfer.search: expected true/false")
    return params


def transfer_options(trial: Any, transfer: dict | None) -> TransferParams | None:
    """The fine-tuning options of one trial (None: trials start from scratch)."""
    if not transfer:
        return None
    params = transfer_base(transfer)
    if not transfer.get(TRANSFER_SEARCH_KEY, False):
        return params
    sampled = {
        key: suggest(trial, f"transfer.{key}", parse_entry(list(spec), f"tune.transfer.{key}"))
        for key, spec in transfer_search_space().items()
    }
    return replace(params, **sampled)


@lru_cache(maxsize=2)
def init_bundle(uri: str):
    """The model every trial fine-tunes from, loaded once per worker."""
    from deepvs30.pyfunc import load_bundle

    return load_bundle(uri)


# --- storage, sampler, pruner --------------------------------------------------------------


def masked(url: str) -> str:
    """The storage URL without its password, for messages and tags."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as given, minus credentials
        return re.sub(r"//[^@/]*@", "//***@", url)


def with_driver(url: str) -> str:
    """``postgresql://`` names psycopg 3 in SQLAlchemy 2.1; we ship psycopg2, so say so."""
    import importlib.util

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def open_storage(url: str, tune: TuneParams):
    """The RDB storage with Optuna's heartbeat: a trial silent for ``grace_s`` is failed and
    queued again (:func:`retry_stale`); any failure becomes one ConfigError naming the URL."""
    import optuna
    import sqlalchemy.exc

    url = with_driver(url)

    if url.startswith("sqlite"):
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}}
    elif url.startswith(("postgresql", "mysql")):
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        raise ConfigError(
            f"tune.storage ({STORAGE_ENV}): {masked(url)!r} is not a database URL "
            "(sqlite:///optuna.db, postgresql://user:password@host:5432/db, mysql://...)"
        )
    errors = (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, OSError)
    for attempt in (1, 2):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=tune.heartbeat_s,
                    grace_period=tune.grace_s,
                    heartbeat_stale_trial_callback=retry_stale(tune.max_retries),
                )
        except sqlalchemy.exc.SQLAlchemyError as exc:
            # workers starting together race to create the schema; the loser retries once
            if attempt == 2 or url.startswith("sqlite"):
                raise ConfigError(_storage_message(url, exc)) from exc
            log.debug("storage not ready (%s); retrying", exc)
            time.sleep(2.0)
        except errors as exc:
            raise ConfigError(_storage_message(url, exc)) from exc
    raise AssertionError("unreachable")


def _storage_message(url: str, exc: Exception) -> str:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return f"tune.storage ({STORAGE_ENV}): cannot open {masked(url)!r}: {reason}"


def retry_stale(max_retries: int) -> Callable:
    """Optuna's retry of a trial failed by the heartbeat (a WAITING copy with its parameters,
    user attrs and the system attr ``failed_trial``: the original's number), with a warning."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retries)

    def callback(study, trial) -> None:
        retries = len(trial.system_attrs.get("retry_history", []))
        again = "queued again" if retries < max_retries else f"not retried ({retries} retries)"
        log.warning("trial %d: its worker stopped beating; marked FAIL, %s", trial.number, again)
        retry(study, trial)

    return callback


def make_sampler(params: SamplerParams):
    import optuna

    class PerTrialSeedSampler(optuna.samplers.BaseSampler):
        """A fresh TPE (or random) sampler per trial, seeded with seed + trial number: Optuna's
        seeded samplers are seeded per process, so two workers (or a resumed study) would
        propose the same startup trials again."""

        def __init__(self) -> None:
            self._inner = self._make(params.seed)

        def _make(self, seed: int):
            if params.name == "random":
                return optuna.samplers.RandomSampler(seed=seed)
            return optuna.samplers.TPESampler(
                seed=seed, n_startup_trials=params.n_startup_trials, constant_liar=True
            )

        def before_trial(self, study, trial) -> None:
            self._inner = self._make(params.seed + trial.number)
            self._inner.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):
            return self._inner.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):
            return self._inner.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            return self._inner.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values) -> None:
            self._inner.after_trial(study, trial, state, values)

    return PerTrialSeedSampler()


def make_pruner(params: PrunerParams, max_epochs: int):
    import optuna

    if params.name == "none":
        return optuna.pruners.NopPruner()
    if params.name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=params.min_resource,
            max_resource=max_epochs,
            reduction_factor=params.reduction_factor,
        )
    percentile = 50.0 if params.name == "median" else params.percentile
    return optuna.pruners.PercentilePruner(
        percentile, n_startup_trials=params.n_startup_trials, n_warmup_steps=params.n_warmup_steps
    )


def open_study(setup: Setup, storage=None):
    """The study, created if new, on ``storage`` (default: :func:`open_storage`)."""
    import optuna

    study = optuna.create_study(
        study_name=setup.tune.study_name,
        storage=storage or open_storage(setup.storage_url, setup.tune),
        sampler=make_sampler(setup.tune.sampler),
        pruner=make_pruner(setup.tune.pruner, setup.tune.max_epochs),
        direction="minimize",
        load_if_exists=True,
    )
    if study.metric_names is None:  # the dashboard's axis label, not "Objective 0"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([OBJECTIVE])
    return study


# --- the study's state: counts, stale trials, claims ---------------------------------------


def worker_label() -> str:
    """host:pid, the ``worker`` user attr of a trial (which process ran it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def counts(study) -> dict[str, int]:
    from optuna.trial import TrialState

    out = {state.name: 0 for state in TrialState}
    for trial in study.get_trials(deepcopy=False):
        out[trial.state.name] += 1
    return out


def fail_stale(study) -> None:
    """Optuna's fail_stale_trials: RUNNING trials without a heartbeat for grace_s become FAIL
    and are queued again (:func:`retry_stale`)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def claim(storage, study, key: str, value: Any) -> bool:
    """Set the study user attr ``key`` only if no process has: True for the one whose INSERT
    the storage accepts (``study_user_attributes`` is unique on study and key, so the INSERT
    is a compare-and-set; Optuna's ``set_user_attr`` would overwrite)."""
    import sqlalchemy as sa

    table = sa.table(
        "study_user_attributes", sa.column("study_id"), sa.column("key"), sa.column("value_json")
    )
    row = {
        "study_id": storage.get_study_id_from_name(study.study_name),
        "key": key,
        "value_json": json.dumps(value),
    }
    try:
        with storage.engine.begin() as connection:
            connection.execute(sa.insert(table).values(**row))
    except sa.exc.IntegrityError:
        return False
    return True


# --- MLflow: one parent run per study -------------------------------------------------------


def configure_mlflow(params: MlflowParams) -> str:
    """tracking.configure, retried once when another worker creates the experiment first."""
    try:
        return configure(params)
    except Exception as first:  # noqa: BLE001 - MlflowException, or a DB error of the store
        time.sleep(1.0)
        try:
            return configure(params)
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"MLflow tracking store unusable: {exc}") from first


def parent_run_id(setup: Setup) -> str:
    """The parent run of the study: the oldest run tagged with it; created if none."""
    import mlflow
    from mlflow import MlflowClient

    configure_mlflow(setup.mlflow)
    client = MlflowClient()
    experiment = mlflow.get_experiment_by_name(setup.mlflow.experiment)
    name = setup.tune.study_name
    query = f"tags.optuna_study = '{name}' and tags.deepvs30_role = '{PARENT_ROLE}'"

    def find() -> list:
        return client.search_runs(
            [experiment.experiment_id], query, order_by=["attributes.start_time ASC"]
        )

    runs = find()
    if runs:
        return runs[0].info.run_id
    run = client.create_run(
        experiment.experiment_id,
        run_name=f"tune-{name}",
        tags={
            "optuna_study": name,
            "deepvs30_role": PARENT_ROLE,
            "optuna_storage": masked(setup.storage_url),
        },
    )
    runs = find()
    chosen = runs[0].info.run_id if runs else run.info.run_id
    if chosen != run.info.run_id:  # another worker created one first: keep theirs
        client.delete_run(run.info.run_id)
        return chosen
    study_params = flatten("tune", {k: v for k, v in asdict(setup.tune).items() if k != "space"})
    study_params.update(flatten("tune.space", setup.tune.space))
    study_params["tune.storage"] = masked(setup.storage_url)
    client.log_batch(
        chosen, params=[mlflow.entities.Param(k, str(v)[:6000]) for k, v in study_params.items()]
    )
    return chosen


# --- one trial -----------------------------------------------------------------------------


def make_objective(setup: Setup, worker: str) -> Callable:
    import mlflow
    import optuna
    from mlflow import MlflowClient

    from deepvs30.train import train_and_log

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)
        chosen = sample(trial, setup.space, setup.base)
        transfer = transfer_options(trial, setup.tune.transfer)
        trial_dir = setup.study_dir / f"trial_{trial.number:04d}"
        train = replace(
            chosen.train,
            epochs=setup.tune.max_epochs,
            out=str(trial_dir),
            checkpoint=str(trial_dir / "checkpoint.pt"),
        )
        state: dict[str, Any] = {"run_id": None, "history": [], "t0": time.perf_counter()}

        def on_epoch(epoch: int, row: dict) -> None:
            if state["run_id"] is None:
                state["run_id"] = mlflow.active_run().info.run_id
                trial.set_user_attr("mlflow_run_id", state["run_id"])
                mlflow.set_tags(_trial_tags(setup, trial))
            state["history"].append(row)
            trial.report(float(row[OBJECTIVE]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"epoch {epoch}: {OBJECTIVE} {row[OBJECTIVE]:.2f} below the pruner's bar"
                )

        try:
            result = train_and_log(
                setup.prepared_dir,
                chosen.features,
                chosen.model,
                train,
                setup.mlflow,
                setup.data_dir,
                trial_dir,
                run_name=f"{setup.tune.study_name}-trial-{trial.number:04d}",
                nested=True,
                on_epoch=on_epoch,
                init=init_bundle(transfer.init_from) if transfer else None,
                init_uri=transfer.init_from if transfer else None,
                transfer=transfer,
            )
        except optuna.TrialPruned:
            _close_pruned(MlflowClient(), state)
            raise
        finally:
            Path(train.checkpoint).unlink(missing_ok=True)
        value = float(result.val_metrics[OBJECTIVE])
        trial.set_user_attr("bundle_dir", str(trial_dir))
        trial.set_user_attr("epochs_run", len(result.history))
        client = MlflowClient()
        client.log_metric(state["run_id"], "epochs_run", len(result.history))
        client.set_tag(state["run_id"], "optuna_state", "COMPLETE")
        return value

    return objective


def _trial_tags(setup: Setup, trial) -> dict[str, str]:
    return {
        "optuna_study": setup.tune.study_name,
        "optuna_trial": str(trial.number),
        "deepvs30_role": TRIAL_ROLE,
        "baseline": str(bool(trial.user_attrs.get("baseline", False))).lower(),
    }


def _close_pruned(client, state: dict) -> None:
    """A pruned child run logs the same summary metrics as a complete one, ends KILLED."""
    run_id, history = state["run_id"], state["history"]
    if run_id is None or not history:
        return
    best = min(history, key=lambda row: row["val_loss"])
    metrics = {
        "best_epoch": best["epoch"],
        "train_seconds": time.perf_counter() - state["t0"],
        "epochs_run": len(history),
        **{f"best_{k}": best[k] for k in ("val_loss", "val_station_mape", "val_station_sigma_ln")},
    }
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    client.set_tag(run_id, "optuna_state", "PRUNED")
    client.set_terminated(run_id, "KILLED")


# --- a worker ------------------------------------------------------------------------------


def run_worker(setup: Setup) -> dict[str, int]:
    """Run trials until the study has n_trials finished (or timeout); returns state counts."""
    import mlflow
    import optuna

    storage = open_storage(setup.storage_url, setup.tune)
    study = open_study(setup, storage)
    c = counts(study)
    budget = setup.tune.n_trials - (c["COMPLETE"] + c["PRUNED"])
    if budget <= 0:
        log.info("study %s has its %d trials", setup.tune.study_name, setup.tune.n_trials)
        return c
    if setup.tune.enqueue_baseline:
        enqueue_baseline(study, storage, setup)
    parent = parent_run_id(setup)
    worker = worker_label()
    log.info("worker %s: study %s, up to %d trials", worker, setup.tune.study_name, budget)
    deadline = None if setup.tune.timeout_s is None else time.monotonic() + setup.tune.timeout_s
    objective, bar = make_objective(setup, worker), trial_bar(budget)
    with mlflow.start_run(run_id=parent), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for _ in range(budget):  # a bound when trials keep failing
            if not wait_for_room(study, setup.tune, deadline):
                break
            study.optimize(
                objective, n_trials=1, catch=TRIAL_ERRORS, callbacks=[bar], gc_after_trial=True
            )
    return counts(study)


def wait_for_room(study, tune: TuneParams, deadline: float | None) -> bool:
    """True when this worker may start a trial (finished + running < n_trials); False when
    the study has its n_trials finished, or past the deadline. While the remaining trials run
    in other workers it waits: if one of them dies, its trial comes back here to re-run."""
    while deadline is None or time.monotonic() < deadline:
        fail_stale(study)
        c = counts(study)
        finished = c["COMPLETE"] + c["PRUNED"]
        if finished >= tune.n_trials:
            return False
        if finished + c["RUNNING"] < tune.n_trials:
            return True
        time.sleep(tune.heartbeat_s)
    return False


def trial_bar(total: int) -> Callable:
    """A study callback that counts this worker's finished trials on a progress bar."""
    from deepvs30 import progress

    bar = progress.bar(desc="tune", unit="trial", total=total)

    def update(study, trial) -> None:
        bar.update(1)
        if trial.state.name == "COMPLETE":
            bar.set_postfix(best=f"{study.best_value:.2f}%")

    return update


def enqueue_baseline(study, storage, setup: Setup) -> bool:
    """Make the first trial of a new study the pipeline's own configuration (params.yaml
    features, model and train, at tune.max_epochs), so the search is measured against it on
    equal terms. Only the process that claims the study user attr ``baseline_enqueued``
    enqueues; a study that already has trials (a resume, another worker) is left as it is."""
    if study.get_trials(deepcopy=False):
        return False
    params, outside = baseline_params(setup.space, setup.base)
    if outside:
        log.warning("the pipeline's configuration is outside tune.space (%s); not enqueued",
                    "; ".join(outside))  # fmt: skip
        return False
    if not claim(storage, study, "baseline_enqueued", worker_label()):
        return False
    study.enqueue_trial(params, user_attrs={"baseline": True})
    log.info("trial 0 of study %s: the pipeline's configuration", setup.tune.study_name)
    return True


def launch_workers(setup: Setup, n_workers: int, verbose: bool) -> list[int]:
    """n local worker processes on the study's storage; returns their exit codes."""
    cmd = [sys.executable, "-m", "deepvs30", "--params", setup.params_path]
    cmd += ["-v"] if verbose else []
    cmd += [
        "tune",
        "--no-finalize",
        "--study",
        setup.tune.study_name,
        "--n-trials",
        str(setup.tune.n_trials),
        "--prepared",
        setup.prepared_dir,
    ]
    if setup.tune.timeout_s is not None:
        cmd += ["--timeout-s", str(setup.tune.timeout_s)]
    # each worker gets its share of the cores, set before torch is imported (threads.py)
    share = threads.share_per_worker(n_workers)
    env = threads.worker_env(share, {**os.environ, STORAGE_ENV: setup.storage_url})
    log.info("%d local workers, %d torch thread(s) each", n_workers, share)
    procs = []
    for _ in range(n_workers):
        procs.append(subprocess.Popen(cmd, env=env))
        time.sleep(1.0)  # stagger start-up (SQLite schema checks, MLflow experiment)
    try:
        return [proc.wait() for proc in procs]
    except KeyboardInterrupt:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)  # SIGINT may be ignored in background jobs
        for proc in procs:
            proc.wait()
        raise


# --- finalize: test evaluation and registration, once per best trial ----------------------


def finalize(setup: Setup, explicit: bool, force: bool = False) -> dict | None:
    """Evaluate the best trial on the test split and register it, exactly once: the process
    that claims the study user attr ``finalize.trial-<n>`` does it and records the version
    there; a later call finds it and registers nothing."""
    storage = open_storage(setup.storage_url, setup.tune)
    study = open_study(setup, storage)
    fail_stale(study)
    running = counts(study)["RUNNING"]
    if running and not explicit:
        print(f"{running} trial(s) still running in other workers; the last one finalizes")
        return None
    try:
        best = study.best_trial
    except ValueError:
        print(f"study {setup.tune.study_name}: no complete trial yet; nothing to register")
        return None
    key = f"finalize.trial-{best.number}"
    record = study.user_attrs.get(key) or {}
    if "registered" in record:
        print(f"trial {best.number} already registered: {json.dumps(record['registered'])}")
        return record["registered"]
    me = {"worker": worker_label()}
    if not (claim(storage, study, key, me) or force):
        owner = (study.user_attrs.get(key) or {}).get("worker")
        print(
            f"trial {best.number} is being finalized by {owner}; if that process is gone, "
            "run `deepvs30 tune --finalize --force`"
        )
        return None
    info = _evaluate_and_register(setup, study, best)
    study.set_user_attr(key, {**me, "registered": info})
    c = counts(study)
    print(
        f"study {setup.tune.study_name}: {c['COMPLETE']} complete, {c['PRUNED']} pruned, "
        f"{c['FAIL']} failed; best trial {best.number} ({OBJECTIVE} {best.value:.2f}%) -> "
        f"{info['name']} version {info['version']}"
    )
    return info


def _evaluate_and_register(setup: Setup, study, best) -> dict:
    import mlflow

    from deepvs30.evaluate import evaluate, print_summary, write_outputs
    from deepvs30.inference import ModelBundle
    from deepvs30.register import register_model

    bundle_dir = Path(best.user_attrs["bundle_dir"])
    out_dir = setup.study_dir / "best"
    out_dir.mkdir(parents=True, exist_ok=True)
    result = evaluate(ModelBundle.load(bundle_dir), setup.prepared_dir, setup.base.train, "test")
    written = write_outputs(result, out_dir, out_dir / "metrics.json")
    print_summary(result["metrics"])
    configure_mlflow(setup.mlflow)
    run_id = best.user_attrs["mlflow_run_id"]
    test_metrics = {
        k: float(v)
        for k, v in flatten("test", result["metrics"]).items()
        if isinstance(v, int | float) and not isinstance(v, bool) and v == v
    }
    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(test_metrics)
        for path in written:
            mlflow.log_artifact(str(path), artifact_path="evaluation")
    extra = {
        "optuna_study": setup.tune.study_name,
        "optuna_trial": str(best.number),
        f"optuna_{OBJECTIVE}": f"{best.value:.4f}",
    }
    info = register_model(bundle_dir, out_dir / "metrics.json", setup.mlflow, extra_tags=extra)
    (out_dir / "registered.json").write_text(json.dumps(info, indent=1))
    _log_study_summary(setup, study, best, info)
    return info


def _log_study_summary(setup: Setup, study, best, info: dict) -> None:
    """Best trial, state counts and the study plots on the parent run."""
    from mlflow import MlflowClient

    client = MlflowClient()
    parent = parent_run_id(setup)
    summary = {
        "number": best.number,
        "value": best.value,
        "params": best.params,
        "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
        "registered": info,
        "counts": counts(study),
        **compute_used(study, setup.tune.max_epochs),
    }
    baseline = [t for t in study.trials if t.user_attrs.get("baseline") and t.value is not None]
    if baseline:
        summary[f"baseline_{OBJECTIVE}"] = baseline[0].value
    out_dir = setup.study_dir / "best"
    (out_dir / "best_trial.json").write_text(json.dumps(summary, indent=1, default=str))
    client.log_artifact(parent, str(out_dir / "best_trial.json"))
    client.log_metric(parent, f"best_{OBJECTIVE}", float(best.value))
    for key in ("epochs_run", "epochs_unpruned", f"baseline_{OBJECTIVE}"):
        if key in summary:
            client.log_metric(parent, key, float(summary[key]))
    for state, n in summary["counts"].items():
        client.log_metric(parent, f"n_{state.lower()}", n)
    tags = {"best_trial": str(best.number), "registered_version": str(info["version"])}
    tags.update({f"best.{k}": str(v)[:5000] for k, v in best.params.items()})
    for key, value in tags.items():
        client.set_tag(parent, key, value)
    for path in study_plots(study, out_dir / "plots"):
        client.log_artifact(parent, str(path), artifact_path="plots")
    client.set_terminated(parent, "FINISHED")


def compute_used(study, max_epochs: int) -> dict[str, int]:
    """Epochs the finished trials ran (one reported value per epoch), against what they
    would have run with neither pruning nor early stopping."""
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    return {
        "epochs_run": sum(len(t.intermediate_values) for t in finished),
        "epochs_unpruned": max_epochs * len(finished),
    }


def study_plots(study, out_dir: Path) -> list[Path]:
    """History, parameter importances and parallel coordinates: HTML (plotly) and PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as vis_mpl

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("plot_optimization_history", "plot_param_importances", "plot_parallel_coordinate"):
        stem = out_dir / name.removeprefix("plot_")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                getattr(vis, name)(study).write_html(str(stem.with_suffix(".html")))
                written.append(stem.with_suffix(".html"))
            except ImportError:
                log.warning("plotly not installed: no %s.html", stem.name)
            except Exception as exc:  # noqa: BLE001 - a plot must not lose the study's result
                log.warning("%s.html not drawn: %s", stem.name, exc)
            try:
                axes = np.ravel(getattr(vis_mpl, name)(study))
                fig = axes[0].figure
                fig.savefig(stem.with_suffix(".png"), dpi=110, bbox_inches="tight")
                plt.close(fig)
                written.append(stem.with_suffix(".png"))
            except Exception as exc:  # noqa: BLE001
                log.warning("%s.png not drawn: %s", stem.name, exc)
    return written


# --- the stage -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=1, help="local worker processes")
    parser.add_argument("--n-trials", type=int, help="finished trials of the study (all workers)")
    parser.add_argument("--timeout-s", type=float, help="stop starting trials after this time")
    parser.add_argument("--study", help="study name (default: tune.study_name)")
    parser.add_argument("--prepared", help="prepared folder (default: prepare.out)")
    parser.add_argument(
        "--finalize",
        action="store_true",
        help="only evaluate the best trial on the test split and register it (once)",
    )
    parser.add_argument("--force", action="store_true", help="with --finalize: take over a claim")
    parser.add_argument(
        "--no-finalize",
        action="store_true",
        help="run trials only (workers started by --workers, or cluster nodes)",
    )


def run(args: argparse.Namespace, params: dict) -> int:
    setup = load_setup(params, args)
    if args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    open_study(setup)  # storage reachable and schema in place before any worker starts
    configure_mlflow(setup.mlflow)
    if args.finalize:
        finalize(setup, explicit=True, force=args.force)
        return 0
    _sigterm_as_interrupt()
    try:
        if args.workers == 1:
            c = run_worker(setup)
        else:
            codes = launch_workers(setup, args.workers, log.isEnabledFor(logging.DEBUG))
            if any(codes):
                log.warning("worker exit codes: %s", codes)
            c = counts(open_study(setup))
    except KeyboardInterrupt:
        print(
            f"interrupted: the running trial is marked FAIL; run again to resume study "
            f"{setup.tune.study_name}",
            file=sys.stderr,
        )
        return 130
    print(
        f"study {setup.tune.study_name}: "
        + ", ".join(f"{n} {s.lower()}" for s, n in c.items() if n)
    )
    if not args.no_finalize:
        finalize(setup, explicit=False)
    return 0


def _sigterm_as_interrupt() -> None:
    """SIGTERM (kill, a batch scheduler) ends the running trial as FAIL, like Ctrl-C."""

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)
