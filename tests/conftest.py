from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    path = Path(os.environ.get("DEEPVS30_REALDATA", REPO.parent / "shared" / "realdata"))
    if not (path / "INDEX.csv").is_file():
        pytest.skip(f"real records not found at {path} (set DEEPVS30_REALDATA)")
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from tiny_dataset import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_dataset):
    """The tiny trained, logged models of tests/model_fixture.py (shared across the session's
    modules), built with no MLflow tracking or registry URI from the environment."""
    from model_fixture import shared_models

    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        yield shared_models(tmp_path_factory, tiny_dataset)
