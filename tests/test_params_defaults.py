"""params.yaml is the single source of configuration: the dataclass each section is read into
has params.yaml's values as its defaults, so code that builds one from its defaults (``Cls()``,
or a partial mapping such as ``tune.transfer``) behaves like the pipeline."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from deepvs30.bench import BenchParams
from deepvs30.config import DataParams, load_params, section
from deepvs30.evaluate import EvaluateParams
from deepvs30.experiments import ExperimentsParams
from deepvs30.ingest import IngestParams
from deepvs30.prepare import PrepareParams
from deepvs30.pretrain import PretrainParams
from deepvs30.promote import PromoteParams
from deepvs30.realbench import RealParams
from deepvs30.realmodel import RealModelParams
from deepvs30.register import RegisterParams
from deepvs30.segment import FeatureParams
from deepvs30.synth.params import SynthParams
from deepvs30.tracking import MlflowParams
from deepvs30.train import ModelParams, TrainParams
from deepvs30.transfer import TransferParams
from deepvs30.tune import TuneParams
from deepvs30.validate import ValidateParams

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "deepvs30"

# section of params.yaml -> the dataclass its module reads it into (config.section)
SECTIONS: dict[str, type] = {
    "data": DataParams,
    "synth": SynthParams,
    "ingest": IngestParams,
    "validate": ValidateParams,
    "prepare": PrepareParams,
    "features": FeatureParams,
    "model": ModelParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "mlflow": MlflowParams,
    "register": RegisterParams,
    "promote": PromoteParams,
    "tune": TuneParams,
    "bench": BenchParams,
    "transfer": TransferParams,
    "pretrain": PretrainParams,
    "real": RealParams,
    "real_model": RealModelParams,
    "experiments": ExperimentsParams,
}

# Fields whose params.yaml value is environment-specific, so the default differs on purpose.
ENVIRONMENT_SPECIFIC = {
    # Paths into the real-data archive under ${DEEPVS30_REALDATA}, which exists only on machines
    # that hold it. The default "" (not used) lets ingest_paths and bench run without it.
    "IngestParams.afad_station_list",
    "IngestParams.ngaw2_flatfile",
}

SECTION_CALL = re.compile(r'section\(\s*params,\s*"(\w+)",\s*(?:\w+\.)?(\w+)\s*\)')


def differing_fields(default: Any, configured: Any, prefix: str) -> list[str]:
    """``Class.field: default -> configured`` for each leaf field that differs, nested
    dataclasses followed field by field (``PrepareParams.split.seed``)."""
    diffs = []
    for f in dataclasses.fields(default):
        ours, theirs = getattr(default, f.name), getattr(configured, f.name)
        name = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(ours) and dataclasses.is_dataclass(theirs):
            diffs += differing_fields(ours, theirs, name)
        elif ours != theirs:
            diffs.append(f"{name}: {ours!r} -> {theirs!r}")
    return diffs


def _field_of(diff: str) -> str:
    return diff.split(":", 1)[0]


@pytest.fixture(scope="module")
def params() -> dict[str, Any]:
    return load_params(REPO / "params.yaml")


def test_every_section_of_params_yaml_is_mapped(params) -> None:
    assert sorted(set(params) - {"__path__"}) == sorted(SECTIONS)


def test_the_map_names_the_class_each_module_reads_its_section_into() -> None:
    calls = {
        (name, cls, path.relative_to(SRC).as_posix())
        for path in SRC.rglob("*.py")
        for name, cls in SECTION_CALL.findall(path.read_text())
    }
    assert len(calls) > len(SECTIONS)  # the pattern still finds the calls
    wrong = sorted(c for c in calls if c[0] not in SECTIONS or SECTIONS[c[0]].__name__ != c[1])
    assert wrong == []


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_dataclass_defaults_equal_params_yaml(params, name: str) -> None:
    cls = SECTIONS[name]
    diffs = differing_fields(cls(), section(params, name, cls), cls.__name__)
    contradicting = [d for d in diffs if _field_of(d) not in ENVIRONMENT_SPECIFIC]
    assert not contradicting, "defaults differ from params.yaml:\n" + "\n".join(contradicting)


def test_each_environment_specific_field_still_differs(params) -> None:
    """An allow-list entry whose default now equals params.yaml is no longer needed."""
    differing = {
        _field_of(d)
        for name, cls in SECTIONS.items()
        for d in differing_fields(cls(), section(params, name, cls), cls.__name__)
    }
    assert sorted(ENVIRONMENT_SPECIFIC - differing) == []


@dataclasses.dataclass
class _Inner:
    seed: int = 1
    names: list = dataclasses.field(default_factory=lambda: ["a"])


@dataclasses.dataclass
class _Outer:
    lr: float = 1e-3
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_differing_fields_names_nested_fields_and_values() -> None:
    configured = _Outer(lr=0.001, inner=_Inner(seed=2, names=["a", "b"]))
    assert differing_fields(_Outer(), configured, "Outer") == [
        "Outer.inner.seed: 1 -> 2",
        "Outer.inner.names: ['a'] -> ['a', 'b']",
    ]
    assert differing_fields(_Outer(), _Outer(), "Outer") == []
