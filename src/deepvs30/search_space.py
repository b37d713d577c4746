"""The tune search space: ``params.yaml`` entries as plain data, checked before any trial.

An entry is either a fixed value (``representation: waveform``) or a range in the format of
``models.search_space``: ``[int, low, high]``, ``[int, low, high, log]``,
``[float, low, high]``, ``[float, low, high, log]`` or ``[categorical, [choices]]``.
Keys are the model family (``model``), the ``features`` keys (segmentation, window_s, ...)
and a few ``train`` keys (lr, batch_size, weight_decay, loss). With ``search_hparams`` each
family's sizes come from ``models.search_space(family)``, overridden per family by
``hparams: {family: {key: entry}}``; Optuna names them ``<family>.<key>`` so that families
never share a distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from deepvs30.errors import ConfigError
from deepvs30.models import MODELS, model_hparams, search_space
from deepvs30.segment import FeatureParams
from deepvs30.train import ModelParams, TrainParams

KINDS = ("int", "float", "categorical")
FEATURE_KEYS = tuple(f.name for f in fields(FeatureParams))
TRAIN_KEYS = ("lr", "batch_size", "weight_decay", "loss")
MODEL_KEY = "model"
ALLOWED_KEYS = (MODEL_KEY, *FEATURE_KEYS, *TRAIN_KEYS)


@dataclass(frozen=True)
class Dist:
    """One Optuna range: int/float between low and high (optionally log), or choices."""

    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def values(self) -> tuple:
        """The values a check can try: the choices, or both ends of the range."""
        return self.choices if self.kind == "categorical" else (self.low, self.high)


@dataclass(frozen=True)
class Space:
    entries: dict[str, Any]  # key -> Dist or fixed value
    hparams: dict[str, dict[str, Any]]  # family -> size -> Dist or fixed value
    search_hparams: bool


@dataclass(frozen=True)
class Trial:
    """What one trial trains: the three typed sections fit() takes."""

    features: FeatureParams
    model: ModelParams
    train: TrainParams


def parse_entry(value: Any, where: str) -> Any:
    """A Dist for ``[kind, ...]`` lists, the value itself otherwise (a fixed choice)."""
    if isinstance(value, tuple):
        value = list(value)
    if not (isinstance(value, list) and value and value[0] in KINDS):
        if isinstance(value, list | dict):
            raise ConfigError(
                f"{where}: expected a fixed value or [int|float, low, high(, log)] or "
                f"[categorical, [choices]], got {value!r}"
            )
        return value
    kind = value[0]
    if kind == "categorical":
        if len(value) != 2 or not isinstance(value[1], list) or not value[1]:
            raise ConfigError(f"{where}: expected [categorical, [choice, ...]], got {value!r}")
        return Dist(kind, choices=tuple(value[1]))
    if len(value) not in (3, 4) or (len(value) == 4 and value[3] != "log"):
        raise ConfigError(f"{where}: expected [{kind}, low, high] or [{kind}, low, high, log]")
    low, high = value[1], value[2]
    number = int if kind == "int" else (int, float)
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, number):
            raise ConfigError(f"{where}: bounds of an {kind} range must be {kind}s, got {bound!r}")
    if low > high:
        raise ConfigError(f"{where}: low {low} must not exceed high {high}")
    log = len(value) == 4
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    return Dist(kind, low, high, log)


def parse_space(space: dict, hparams: dict, search_hparams: bool, where: str) -> Space:
    unknown = sorted(set(space) - set(ALLOWED_KEYS))
    if unknown:
        raise ConfigError(f"{where}.space: unknown key(s) {unknown}; allowed: {list(ALLOWED_KEYS)}")
    entries = {key: parse_entry(value, f"{where}.space.{key}") for key, value in space.items()}
    per_family: dict[str, dict[str, Any]] = {}
    for family, sizes in hparams.items():
        if family not in MODELS:
            raise ConfigError(
                f"{where}.hparams: unknown model '{family}'; known models: {sorted(MODELS)}"
            )
        if not isinstance(sizes, dict):
            raise ConfigError(f"{where}.hparams.{family}: expected a mapping of sizes")
        allowed = model_hparams(family)
        bad = sorted(set(sizes) - set(allowed))
        if bad:
            raise ConfigError(
                f"{where}.hparams.{family}: unknown size(s) {bad}; allowed: {sorted(allowed)}"
            )
        per_family[family] = {
            key: parse_entry(value, f"{where}.hparams.{family}.{key}")
            for key, value in sizes.items()
        }
    return Space(entries, per_family, search_hparams)


def check_space(space: Space, base: Trial, where: str) -> None:
    """Refuse, before any trial, values that fit() would refuse: unknown models, segmentations,
    representations, non-positive windows or learning rates."""
    for family in _values(space.entries.get(MODEL_KEY, base.model.name)):
        if family not in MODELS:
            raise ConfigError(
                f"{where}.space.model: unknown model '{family}'; known models: {sorted(MODELS)}"
            )
    for key in FEATURE_KEYS:
        if key in space.entries:
            for value in _values(space.entries[key]):
                try:
                    replace(base.features, **{key: value})
                except (ConfigError, TypeError) as exc:
                    raise ConfigError(f"{where}.space.{key}: {value!r} refused ({exc})") from exc
    for key in ("lr", "batch_size"):
        for value in _values(space.entries.get(key, getattr(base.train, key))):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{where}.space.{key}: must be positive, got {value!r}")
    if space.entries.get("batch_size") is not None:
        for value in _values(space.entries["batch_size"]):
            if not isinstance(value, int):
                raise ConfigError(f"{where}.space.batch_size: must be an integer, got {value!r}")


def _values(entry: Any) -> tuple:
    return entry.values() if isinstance(entry, Dist) else (entry,)


def suggest(trial: Any, name: str, entry: Any) -> Any:
    """Ask the Optuna trial for ``name`` within ``entry`` (a fixed value is returned as is)."""
    if not isinstance(entry, Dist):
        return entry
    if entry.kind == "categorical":
        return trial.suggest_categorical(name, list(entry.choices))
    if entry.kind == "int":
        return trial.suggest_int(name, int(entry.low), int(entry.high), log=entry.log)
    return trial.suggest_float(name, float(entry.low), float(entry.high), log=entry.log)


def size_entries(
    space: Space, family: str, representation: str, base_model: ModelParams
) -> dict[str, Any]:
    """The sizes of ``family`` a trial gets (size -> Dist or fixed value): with
    ``search_hparams`` the ranges of ``models.search_space``, else ``model.hparams`` (for the
    configured family); ``tune.hparams[family]`` overrides either."""
    if space.search_hparams:
        entries: dict[str, Any] = {
            key: parse_entry(spec, f"models.search_space({family})")
            for key, spec in search_space(family, representation).items()
        }
    else:
        entries = dict(base_model.hparams) if family == base_model.name else {}
    entries.update(space.hparams.get(family, {}))
    return entries


def sample(trial: Any, space: Space, base: Trial) -> Trial:
    """The configuration of one trial: base sections with the sampled values replaced."""
    family = suggest(trial, MODEL_KEY, space.entries.get(MODEL_KEY, base.model.name))
    feats = {k: suggest(trial, k, v) for k, v in space.entries.items() if k in FEATURE_KEYS}
    features = replace(base.features, **feats)
    sizes = size_entries(space, family, features.representation, base.model)
    hparams = {key: suggest(trial, f"{family}.{key}", e) for key, e in sizes.items()}
    train = replace(
        base.train, **{k: suggest(trial, k, v) for k, v in space.entries.items() if k in TRAIN_KEYS}
    )
    return Trial(features, ModelParams(family, hparams), train)


def baseline_params(space: Space, base: Trial) -> tuple[dict[str, Any], list[str]]:
    """The Optuna parameters that make a trial train ``base`` (the pipeline's own
    configuration), and the entries whose base value lies outside the space (the baseline
    then cannot be one trial of it)."""
    params: dict[str, Any] = {}
    family = base.model.name
    base_values: dict[str, Any] = {MODEL_KEY: family}
    base_values.update({k: getattr(base.features, k) for k in FEATURE_KEYS})
    base_values.update({k: getattr(base.train, k) for k in TRAIN_KEYS})
    entries = {key: (key, entry, base_values[key]) for key, entry in space.entries.items()}
    sizes = {**model_hparams(family), **base.model.hparams}
    for key, entry in size_entries(space, family, base.features.representation, base.model).items():
        entries[f"{family}.{key}"] = (f"{family}.{key}", entry, sizes[key])
    outside = []
    for name, entry, value in entries.values():
        if not isinstance(entry, Dist):
            if entry != value:
                outside.append(f"{name}: {value!r} (the space fixes {entry!r})")
            continue
        inside = (
            value in entry.choices
            if entry.kind == "categorical"
            else isinstance(value, int | float) and entry.low <= value <= entry.high
        )
        if not inside:
            outside.append(f"{name}: {value!r}")
        params[name] = value
    return params, outside
