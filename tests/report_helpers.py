"""A small predict report for the report tests, built by the command itself.

Record files: AFAD/NSMN text files (the reader of tests/test_readers_synthetic.py) holding
waveforms of the tiny dataset (tests/tiny_dataset.py: P and S in the waveform, a site
resonance on the horizontals), so that predict picks P/S itself; the model is the tiny test
model (tests/model_fixture.py), loaded from its bundle folder. Stations:

- TK.9001: two records, labelled 300 m/s by the station table;
- TK.9002: two records, no label, no coordinates;
- TK.9003: one 5 s record, shorter than the model's 10 s minimum: no prediction;
- one file that is no record at all (``notes.dat``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepvs30.cli import main
from deepvs30.dataset import CanonicalDataset
from test_readers_synthetic import NSMN_HEADER

GAL_PER_MPS2 = 100.0
STATION_CSV = """network,station,lat,lon,vs30_mps,vs30_method
TK,9001,38.25,27.125,300.0,measured
"""
# station -> (tiny-dataset record indices, coordinates as NSMN writes them, seconds kept)
STATIONS: dict[str, tuple[list[int], str, float | None]] = {
    "9001": ([0, 24], "38.25000N-27.12500E", None),
    "9002": ([1, 25], "", None),
    "9003": ([2], "38.75000N-27.50000E", 5.0),
}


@dataclass
class BuiltReport:
    dir: Path
    records_dir: Path
    result: dict  # predict --format json
    exit_code: int


def write_nsmn_record(
    path: Path, waveform_mps2: np.ndarray, station: str, coords: str, start: str
) -> Path:
    """One NSMN text file: columns N-S, E-W, U-D in gal at 100 Hz."""
    header = NSMN_HEADER.format(station=station, n=waveform_mps2.shape[1],
                                dt_line="SAMPLING INTERVAL (sec) : 0.01")  # fmt: skip
    for old, new in (("38.10000N-27.10000E", coords), ("02/01/2020 03:04:00.000000", start)):
        assert old in header, f"NSMN_HEADER changed: {old!r} not in it"
        header = header.replace(old, new)
    data_gal = waveform_mps2[[1, 2, 0]].T * GAL_PER_MPS2
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in data_gal)
    path.write_text(header + rows + "\n", encoding="latin-1")
    return path


def write_records(folder: Path, tiny_dataset: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    dataset = CanonicalDataset(tiny_dataset)
    for station, (rows, coords, keep_s) in STATIONS.items():
        for k, i in enumerate(rows):
            waveform = dataset.waveform(i)
            if keep_s is not None:
                waveform = waveform[:, : int(keep_s * 100)]
            start = f"0{k + 1}/01/2020 03:04:00.000000"
            write_nsmn_record(folder / f"{station}_{k}.txt", waveform, station, coords, start)
    (folder / "notes.dat").write_text("not a strong-motion record\n")
    return folder


def build_report(root: Path, models, tiny_dataset: Path) -> BuiltReport:
    """``deepvs30 predict RECORDS --report DIR --format json`` with the tiny model."""
    records = write_records(root / "records", tiny_dataset)
    (root / "stations.csv").write_text(STATION_CSV)
    params = models.params_file("report", ingest={"afad_station_list": "", "ngaw2_flatfile": ""})
    out, report = root / "pred.json", root / "report"
    argv = ["--params", str(params), "predict", str(records), "--model", str(models.good),
            "--stations", str(root / "stations.csv"), "--format", "json", "--out", str(out),
            "--report", str(report)]  # fmt: skip
    code = main(argv)
    return BuiltReport(report, records, json.loads(out.read_text()), code)


def frames(result: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """records, stations (indexed by station) and skipped of a predict JSON result."""
    stations = pd.DataFrame(result["stations"]).set_index("station")
    return pd.DataFrame(result["records"]), stations, pd.DataFrame(result["skipped"])
