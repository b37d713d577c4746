"""``deepvs30 synth``: the physics-based synthetic strong-motion corpus (the default dataset).

Stations in regional clusters, each on a layered 1-D profile (Vs30 from the profile); Boore
(2003) stochastic S and P motions; linear SH/P site response; written in the canonical
SeisBench layout with ``profiles.csv`` and ``stations.csv`` side tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Any

from deepvs30.config import section
from deepvs30.synth.params import SynthParams

__all__ = ["SynthParams", "add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset folder to write (replaced)")
    parser.add_argument("--stations", type=int, help="number of stations (params: n_stations)")
    parser.add_argument("--events", type=int, help="number of events (params: n_events)")
    parser.add_argument("--seed", type=int, help="random seed (params: seed)")
    parser.add_argument(
        "--plot", action="store_true", help="also write <out>/synth_samples.png (sample records)"
    )


def run(args: argparse.Namespace, params: dict[str, Any]) -> int:
    from deepvs30.synth.generate import generate  # numpy/scipy work only when the command runs

    p = section(params, "synth", SynthParams)
    overrides = {"n_stations": args.stations, "n_events": args.events, "seed": args.seed}
    p = dataclasses.replace(p, **{k: v for k, v in overrides.items() if v is not None})
    summary = generate(p, args.out)
    log.info(
        "synth: wrote %d records (%d stations, %d events) to %s in %.1f s (%.0f records/s)",
        summary.n_records,
        summary.n_stations,
        summary.n_events,
        summary.out_dir,
        summary.elapsed_s,
        summary.records_per_s,
    )
    if args.plot:
        from deepvs30.synth.plot import plot_samples

        png = plot_samples(Path(args.out), Path(args.out) / "synth_samples.png")
        log.info("synth: sample plot %s", png)
    return 0
