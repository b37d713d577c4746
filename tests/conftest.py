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
