"""``make dashboard``: the Optuna study storage that ``deepvs30 tune`` writes, for optuna-dashboard.

``python -m deepvs30.dashboard [--params params.yaml]`` prints the storage URL: ``$TUNE_STORAGE``
when set, else ``tune.storage`` of params.yaml, with the psycopg2 driver named for PostgreSQL as
``deepvs30 tune`` names it. Light on purpose (no Optuna import): the Makefile calls it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Mapping

from deepvs30.config import DEFAULT_PARAMS_PATH, load_params

STORAGE_ENV = "TUNE_STORAGE"  # the override deepvs30.tune reads


def study_storage(params: dict, environ: Mapping[str, str] = os.environ) -> str:
    """The storage URL of the tuning study: the environment's override, else params.yaml."""
    url = environ.get(STORAGE_ENV) or params["tune"]["storage"]
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepvs30.dashboard", description=__doc__)
    parser.add_argument("--params", default=str(DEFAULT_PARAMS_PATH), help="parameter file")
    args = parser.parse_args(argv)
    print(study_storage(load_params(args.params)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
