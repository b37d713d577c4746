"""The ``deepvs30`` command: one subcommand per pipeline stage, each a thin shell over one module.

Every module named in :data:`COMMANDS` exposes ``add_arguments(parser)`` and
``run(args, params) -> int | None``. Modules are imported only when their command runs, so
``deepvs30 predict`` does not pay for Optuna and ``deepvs30 synth`` does not pay for MLflow.
``params.yaml`` is read here, once, and handed down.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from deepvs30.config import DEFAULT_PARAMS_PATH, load_params
from deepvs30.errors import DeepVs30Error

COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("deepvs30.synth", "generate the physics-based synthetic corpus (default dataset)"),
    "ingest": ("deepvs30.ingest", "read real archives (AFAD, K-NET/KiK-net, ObsPy formats)"),
    "validate": ("deepvs30.validate", "check a dataset with the Great Expectations suite"),
    "prepare": ("deepvs30.prepare", "filter, resample, window and split (station-disjoint)"),
    "train": ("deepvs30.train", "train a model, logged in MLflow"),
    "pretrain": ("deepvs30.pretrain", "label-free pre-training (S-P time, magnitude, distance)"),
    "evaluate": ("deepvs30.evaluate", "metrics and plots on the station-disjoint test split"),
    "register": ("deepvs30.register", "register the trained model in the MLflow registry"),
    "tune": ("deepvs30.tune", "Optuna search over models, segmentation and transfer"),
    "promote": ("deepvs30.promote", "champion/challenger promotion in the MLflow registry"),
    "predict": ("deepvs30.predict", "Vs30 of stations from raw record files"),
    "bench": ("deepvs30.bench", "speed, memory and scaling benchmarks"),
    "real-benchmark": ("deepvs30.realbench", "station-disjoint benchmark on the real records"),
    "real-model": ("deepvs30.realmodel", "train, register and promote the real-world model"),
    "experiment": ("deepvs30.experiments", "transfer, rivals and headline experiments over seeds"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deepvs30", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--params", default=str(DEFAULT_PARAMS_PATH), help="parameter file (default: params.yaml)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    top, rest = build_parser().parse_known_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if top.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    module_name = COMMANDS[top.command][0]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"deepvs30 {top.command}", description=COMMANDS[top.command][1]
    )
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        params = load_params(top.params)
        return int(module.run(args, params) or 0)
    except DeepVs30Error as exc:
        print(f"deepvs30 {top.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
