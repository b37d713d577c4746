"""A full ``ingest`` of ../shared/realdata: counts against INDEX.csv, exact quarantine accounting,
and a round trip through the canonical format and SeisBench's WaveformDataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.ingest import (
    QUARANTINE_FILE,
    IngestParams,
    default_realdata_dir,
    ingest_paths,
    read_quarantine,
    walk,
)
from deepvs30.readers import read_record

REALDATA = default_realdata_dir()
META = REALDATA / "metadata/earthquake_selection_wheel"
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (REALDATA / "INDEX.csv").is_file(),
        reason=f"real records not found at {REALDATA} (set DEEPVS30_REALDATA)",
    ),
]
# Formats with a reader, and label sources the built-in tables reproduce.
READABLE = ("MATLAB v5", "AFAD/NSMN", "gmpe-smtk ASCII", "NIED K-NET")
JOINABLE_LABELS = (
    "AFAD .mat",
    "AFAD station list",
    "ITACA/ESM",
    "NGA-West2 flatfile VS30 by K-NET",
)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    out = tmp_path_factory.mktemp("realdata") / "dataset"
    params = IngestParams(
        afad_station_list=str(META / "stations.xlsx"),
        ngaw2_flatfile=str(META / "NGA-West2_flatfile.csv"),
    )
    summary = ingest_paths([REALDATA], out, params=params)
    metadata = pd.read_csv(out / "metadata.csv", dtype={"station_code": str})
    return summary, out, metadata


def _expected_rows() -> pd.DataFrame:
    index = pd.read_csv(REALDATA / "INDEX.csv", dtype={"station": str})
    readable = index["format"].str.startswith(READABLE)
    labelled = index["vs30"].notna() & index["vs30_method"].str.startswith(JOINABLE_LABELS)
    return index[readable & labelled & (index["n_components"] == 3)]


def _conflicting(expected: pd.DataFrame) -> pd.Series:
    """Records of stations whose sources give different Vs30 labels (quarantined)."""
    key = expected["network"].astype(str) + "." + expected["station"].astype(str)
    n_labels = expected.groupby(key)["vs30"].transform("nunique")
    return n_labels > 1


def test_all_labelled_three_component_records_are_ingested(ingested) -> None:
    summary, out, metadata = ingested
    expected = _expected_rows()
    conflicting = _conflicting(expected)
    assert int(conflicting.sum()) == 4  # TK.4801 and TK.4806: .mat label vs AFAD station list
    quarantine = read_quarantine(out / QUARANTINE_FILE)
    assert quarantine["reason"].str.contains("conflicting Vs30 labels").sum() == 4
    expected = expected[~conflicting]
    assert summary.ingested == len(expected) == len(metadata) == 53

    def files(joined: str, root: str = "") -> frozenset[str]:
        return frozenset(root + f for f in joined.split(";") if not f.endswith(".metadata"))

    got = dict(
        zip(map(files, metadata["trace_source_file"]), metadata["station_vs30_mps"], strict=True)
    )
    want = {
        files(f, f"{REALDATA}/"): float(v)
        for f, v in zip(expected["files"], expected["vs30"], strict=True)
    }
    assert set(got) == set(want)
    for key, vs30 in want.items():
        assert got[key] == pytest.approx(vs30, abs=0.01), sorted(key)
    assert summary.ingested_by_format == {
        "afad-mat": 4,
        "nsmn": 20,
        "itaca": 13,
        "knet": 13,
        "kiknet": 3,
    }


def test_quarantine_accounting_is_exact(ingested) -> None:
    summary, out, metadata = ingested
    quarantine = read_quarantine(out / QUARANTINE_FILE)
    assert len(quarantine) == summary.quarantined
    assert summary.ingested + summary.quarantined == summary.input_items
    assert summary.balanced
    # every data file ends up in the dataset or in quarantine, none silently dropped
    data_files, _, _ = walk([REALDATA])
    used = set()
    for column in (metadata["trace_source_file"], quarantine["file"]):
        for joined in column:
            used.update(joined.split(";"))
    itaca_metadata = {str(p) for p in data_files if p.suffix == ".metadata"}
    assert {str(p) for p in data_files} - itaca_metadata <= used
    reasons = quarantine["reason"]
    assert (reasons == "no Vs30 label").sum() == 9  # 4822, 4823, ESM HI/HL, mseed CLC/CMB/M04C...
    assert reasons.str.contains("borehole sensor not ingested").sum() == 2
    assert reasons.str.contains("unsupported or unrecognised format").sum() == 38


def test_arrivals_given_for_afad_and_picked_otherwise(ingested) -> None:
    _, _, metadata = ingested
    afad = metadata[metadata["trace_source_format"] == "afad-mat"]
    assert (afad["trace_p_status"] == "given").all()
    p_samples = dict(zip(afad["station_code"], afad["trace_p_arrival_sample"], strict=True))
    assert p_samples["6501"] == 1319  # Ptime 13.19 s at 100 Hz
    others = metadata[metadata["trace_source_format"] != "afad-mat"]
    assert set(others["trace_p_status"]) <= {"picked", "failed"}
    picked = metadata[metadata["trace_s_status"] == "picked"]
    assert (picked["trace_s_arrival_sample"] > picked["trace_p_arrival_sample"]).all()
    failed = metadata[metadata["trace_p_status"] == "failed"]
    assert failed["trace_p_arrival_sample"].isna().all()
    assert (failed["trace_pick_note"].fillna("") != "").all()


def test_round_trip_through_seisbench(ingested) -> None:
    import seisbench.data as sbd

    _, out, metadata = ingested
    dataset = sbd.WaveformDataset(out, component_order="ZNE")
    assert len(dataset) == len(metadata)
    for i in (0, len(dataset) // 2, len(dataset) - 1):
        row = dataset.metadata.iloc[i]
        first = Path(str(row["trace_source_file"]).split(";")[0])
        (record,) = [r for r in read_record(first) if r.station_code == str(row["station_code"])]
        np.testing.assert_allclose(
            dataset.get_waveforms(i), record.waveform_mps2.astype(np.float32), rtol=0, atol=0
        )
