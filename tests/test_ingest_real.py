"""A full ``ingest`` of ../shared/realdata (archives included, params.yaml's ingest section):
outcomes derived row by row from INDEX.csv and the readers' capabilities, exact quarantine
accounting, and a round trip through the canonical format and SeisBench's WaveformDataset."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.config import load_params, section
from deepvs30.ingest import (
    QUARANTINE_FILE,
    IngestParams,
    default_realdata_dir,
    ingest_paths,
    read_quarantine,
    walk,
)
from deepvs30.readers import FORMATS, is_sidecar, knet, read_record
from deepvs30.readers.archives import is_archive, list_members, member_name, split_member
from realdata_index import LABEL_IN_FILE, READS_WHOLE

REPO = Path(__file__).resolve().parents[1]
REALDATA = default_realdata_dir()
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (REALDATA / "INDEX.csv").is_file(),
        reason=f"real records not found at {REALDATA} (set DEEPVS30_REALDATA)",
    ),
]
# Formats with a reader whose rows may still fail for a stated reason (1 component, no
# StationXML response, non-acceleration units).
READS_SOME = {"ESM ASCII": "esm", "miniSEED + StationXML": "mseed", "PEER": "at2", "SAC": "sac"}
# INDEX vs30_method routes the readers and the built-in station tables reproduce.
LABEL_BY_TABLE = (
    "AFAD station list",
    "AFAD stations.xlsx",
    "NGA-West2 flatfile VS30 by K-NET",
    "NGA-West2 flatfile STATION",
)


@pytest.fixture(scope="module")
def params() -> IngestParams:
    return section(load_params(REPO / "params.yaml"), "ingest", IngestParams)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, params):
    out = tmp_path_factory.mktemp("realdata") / "dataset"
    summary = ingest_paths([REALDATA], out, params=params)
    metadata = pd.read_csv(out / "metadata.csv", dtype={"station_code": str})
    quarantine = read_quarantine(out / QUARANTINE_FILE)
    return summary, out, metadata, quarantine


# --- what INDEX.csv says should happen ------------------------------------------------------


def _index() -> pd.DataFrame:
    index = pd.read_csv(REALDATA / "INDEX.csv", dtype={"station": str})
    index["reader"] = index["format"].map(lambda f: _prefix_lookup(f, READS_WHOLE))
    index["some_reader"] = index["format"].map(lambda f: _prefix_lookup(f, READS_SOME))
    for name in set(index["reader"].dropna()) | set(index["some_reader"].dropna()):
        assert name in FORMATS, name
    return index


def _prefix_lookup(text: str, table: dict[str, str]) -> str | None:
    return next((v for k, v in table.items() if text.startswith(k)), None)


def _names(files: str) -> frozenset[str]:
    """INDEX ``files`` as ingest names them: ``archive:member``; a whole archive → its members."""
    names = set()
    for f in files.split(";"):
        if f.endswith(".metadata"):
            continue
        path = REALDATA / f
        if is_archive(f):
            names |= {member_name(path, m) for m in list_members(path) if not is_sidecar(Path(m))}
        else:
            names.add(str(path))
    return frozenset(names)


def _label_reproducible(row: pd.Series) -> bool:
    method = "" if pd.isna(row["vs30_method"]) else str(row["vs30_method"])
    if pd.isna(row["vs30"]):
        return False
    # INDEX leaves the method blank for TADAS labels taken from the VS30_M/S header alone
    in_header = row["reader"] == "esm" and not method
    return method.startswith(LABEL_IN_FILE + LABEL_BY_TABLE) or in_header


def _borehole(row: pd.Series) -> bool:
    return "BOREHOLE" in str(row["notes"])


def _station_key(row: pd.Series) -> str:
    network = re.search(r"\b([A-Z0-9]{2})\b", str(row["network"]))
    return f"{network[1] if network else row['network']}.{row['station']}"


def _labelled_rows(index: pd.DataFrame) -> pd.DataFrame:
    """Rows ingest can read whole and label, surface sensor (params.yaml: sensor surface)."""
    whole = index["reader"].notna() & (index["n_components"] == 3)
    labelled = index.apply(_label_reproducible, axis=1)
    return index[whole & labelled & ~index.apply(_borehole, axis=1)]


def _conflicting(rows: pd.DataFrame, tolerance_mps: float) -> pd.Series:
    """Rows of stations whose labels spread over more than the tolerance (quarantined)."""
    by_station = rows.groupby(rows.apply(_station_key, axis=1))["vs30"]
    spread = by_station.transform("max") - by_station.transform("min")
    return spread > tolerance_mps + 1e-9


def _format_of(row: pd.Series) -> str:
    if row["reader"] != "knet":
        return row["reader"]
    return knet.format_of(Path(row["files"].split(";")[0]))  # kiknet: .NS1/.NS2 suffixes


def _quarantined(quarantine: pd.DataFrame, pattern: str) -> set[frozenset[str]]:
    rows = quarantine[quarantine["reason"].str.contains(pattern, regex=False)]
    return {frozenset(f.split(";")) for f in rows["file"]}


def _dataset_files(metadata: pd.DataFrame) -> dict[frozenset[str], float]:
    files = metadata["trace_source_file"].map(lambda j: frozenset(j.split(";")))
    return dict(zip(files, metadata["station_vs30_mps"], strict=True))


# --- tests ----------------------------------------------------------------------------------


def test_labelled_rows_are_ingested_with_their_index_vs30(ingested, params) -> None:
    summary, _, metadata, quarantine = ingested
    rows = _labelled_rows(_index())
    conflicting = _conflicting(rows, params.vs30_tolerance_mps)
    expected = rows[~conflicting]
    want = {_names(f): float(v) for f, v in zip(expected["files"], expected["vs30"], strict=True)}
    got = _dataset_files(metadata)
    assert set(got) == set(want)
    for key, vs30 in want.items():
        assert got[key] == pytest.approx(vs30, abs=0.01), sorted(key)
    assert summary.ingested == len(expected) == len(metadata)
    assert summary.ingested_by_format == Counter(expected.apply(_format_of, axis=1))
    conflicted = {_names(f) for f in rows[conflicting]["files"]}
    assert _quarantined(quarantine, "conflicting Vs30 labels") == conflicted


def test_every_labelled_row_is_ingested_or_explained(ingested) -> None:
    """Labelled rows left out: formats without a reader, single/two-component rows, labels no
    built-in table gives (NGA-West2 by coordinates, GeoNet), borehole sensors, conflicts."""
    _, _, metadata, quarantine = ingested
    index = _index()
    labelled = index[index["vs30"].notna()]
    got = set(_dataset_files(metadata))
    conflicted = _quarantined(quarantine, "conflicting Vs30 labels")
    for _, row in labelled.iterrows():
        names = _names(row["files"])
        if names in got:
            continue
        unreadable = pd.isna(row["reader"]) or row["n_components"] != 3
        why = unreadable or not _label_reproducible(row) or _borehole(row) or names in conflicted
        assert why, f"{row['files']}: labelled, readable, but not ingested"
    assert labelled["files"].map(_names).isin(got).sum() == len(metadata)


def test_quarantine_reasons_follow_from_index(ingested) -> None:
    _, _, _, quarantine = ingested
    index = _index()
    readable = index["reader"].notna() | index["some_reader"].notna()
    three = index["n_components"] == 3
    surface = ~index.apply(_borehole, axis=1)
    unlabelled = ~index.apply(_label_reproducible, axis=1)
    no_label = index[readable & three & surface & unlabelled]
    no_label_whole = no_label[no_label["reader"].notna()]
    quarantined = _quarantined(quarantine, "no Vs30 label")
    # rows read whole without a usable label say so; others may fail first for a reader reason
    assert {_names(f) for f in no_label_whole["files"]} <= quarantined
    assert quarantined <= {_names(f) for f in no_label["files"]}
    every = {n for q in quarantine["file"] for n in q.split(";")}
    assert {n for f in no_label["files"] for n in _names(f)} <= every
    borehole = index[(index["reader"].notna()) & ~surface]
    assert _quarantined(quarantine, "borehole sensor not ingested") == {
        _names(f) for f in borehole["files"]
    }
    no_reader = index[~readable]
    unsupported = {n for s in _quarantined(quarantine, "unsupported or unrecognised") for n in s}
    expected_unsupported = {n for f in no_reader["files"] for n in _names(f)}
    assert expected_unsupported <= unsupported
    in_index = {n for f in index["files"] for n in _names(f)}
    assert not (unsupported - expected_unsupported) & in_index  # the rest: files INDEX omits


def test_quarantine_accounting_is_exact(ingested) -> None:
    summary, _, metadata, quarantine = ingested
    assert len(quarantine) == summary.quarantined
    assert (quarantine["reason"] != "").all()
    assert summary.ingested + summary.quarantined == summary.input_items
    assert summary.balanced
    # every data file (archive members included) ends up in the dataset or in quarantine
    data_files, _, _ = walk([REALDATA])
    walked = set()
    for path in data_files:
        if is_archive(path):
            walked |= {member_name(path, m) for m in list_members(path) if not is_sidecar(Path(m))}
        else:
            walked.add(str(path))
    used = set()
    for column in (metadata["trace_source_file"], quarantine["file"]):
        for joined in column:
            used.update(joined.split(";"))
    assert walked <= used
    assert summary.input_files == len(walked)
    assert summary.archives == sum(map(is_archive, data_files))


def test_archive_members_named_as_in_index(ingested) -> None:
    _, _, metadata, _ = ingested
    names = {f for joined in metadata["trace_source_file"] for f in joined.split(";")}
    members = [split_member(n) for n in names if split_member(n)]
    assert {a.name for a, _ in members} >= {
        p.name for p in REALDATA.glob("*/*") if p.name.endswith((".tar.gz", ".zip"))
    } - {"ce14196p.zip"}  # every NIED/TADAS archive gave records (the DMG zip has no reader)
    listed = {a: set(list_members(a)) for a in {a for a, _ in members}}
    assert all(m in listed[a] and "/" not in m for a, m in members)
    assert all(str(a).startswith(f"{REALDATA}/") for a, _ in members)


def test_arrivals_given_for_afad_and_picked_otherwise(ingested) -> None:
    _, _, metadata, _ = ingested
    afad = metadata[metadata["trace_source_format"] == "afad-mat"]
    index = _index().assign(names=lambda d: d["files"].map(_names))
    notes = dict(zip(index["names"], index["notes"], strict=True))
    for files, p_sample, status in zip(
        afad["trace_source_file"],
        afad["trace_p_arrival_sample"],
        afad["trace_p_status"],
        strict=True,
    ):
        ptime = re.search(r"Ptime=([\d.]+)s", notes[frozenset(files.split(";"))])
        if ptime:  # CNNLSTM_DeepEQ files give P and S; the AFAD-1218 ones give none
            assert (status, p_sample) == ("given", round(float(ptime[1]) * 100))
    others = metadata[metadata["trace_source_format"] != "afad-mat"]
    assert "given" not in set(others["trace_p_status"])  # no other source gives arrivals
    both = metadata.dropna(subset=["trace_p_arrival_sample", "trace_s_arrival_sample"])
    assert (both["trace_s_arrival_sample"] > both["trace_p_arrival_sample"]).all()
    failed = metadata[metadata["trace_p_status"] == "failed"]
    assert failed["trace_p_arrival_sample"].isna().all()
    assert (failed["trace_pick_note"].fillna("") != "").all()


def test_round_trip_through_seisbench(ingested) -> None:
    import seisbench.data as sbd

    _, out, metadata, _ = ingested
    dataset = sbd.WaveformDataset(out, component_order="ZNE")
    assert len(dataset) == len(metadata)
    archived = np.flatnonzero(metadata["trace_source_file"].str.contains(".tar.gz:", regex=False))
    for i in (0, len(dataset) // 2, len(dataset) - 1, int(archived[0])):
        row = dataset.metadata.iloc[i]
        first = str(row["trace_source_file"]).split(";")[0]
        (record,) = [r for r in read_record(first) if r.station_code == str(row["station_code"])]
        np.testing.assert_allclose(
            dataset.get_waveforms(i), record.waveform_mps2.astype(np.float32), rtol=0, atol=0
        )
