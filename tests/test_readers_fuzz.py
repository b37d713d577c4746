"""Malformed bytes and truncations of real files: readers raise ReaderError and nothing else."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepvs30.errors import ReaderError
from deepvs30.ingest import default_realdata_dir
from deepvs30.readers import read_record
from deepvs30.readers.archives import list_members, split_member

REALDATA = default_realdata_dir()
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (REALDATA / "INDEX.csv").is_file(),
        reason=f"real records not found at {REALDATA} (set DEEPVS30_REALDATA)",
    ),
]
TADAS_ZIP = "afad_kahramanmaras2023_karatas/20230206011732.zip"
DATOOLS = "kiknet_datools_berse/examples/data/Example_2/FKSH11/small_strain"
# (file to corrupt, its sibling files copied intact, format to force or "auto"); archive
# members are named ``archive:member`` and written out beside the others.
CASES = [
    ("afad_dertuncay_massdownloader/20180307050823_1210.txt", [], "auto"),
    ("afad_cnnlstm_deepeq/20120113141020_2507.mat", [], "afad-mat"),
    (
        "knet_strong_motion_web_viewer/KNG0012408091957.NS",
        [
            "knet_strong_motion_web_viewer/KNG0012408091957.EW",
            "knet_strong_motion_web_viewer/KNG0012408091957.UD",
        ],
        "knet",
    ),
    (
        "gmpe_smtk_laquila/16840/16840_V.cor.acc",
        [
            "gmpe_smtk_laquila/16840/16840_H1.cor.acc",
            "gmpe_smtk_laquila/16840/16840_H2.cor.acc",
            "gmpe_smtk_laquila/16840/16840.metadata",
        ],
        "itaca",
    ),
    (
        "gmprocess_testdata/high_freq_sa/RSN10590_ComalTX11-10-20_IU.CCM.BHZ.00.AT2",
        [
            "gmprocess_testdata/high_freq_sa/RSN10590_ComalTX11-10-20_IU.CCM.BH1.00.AT2",
            "gmprocess_testdata/high_freq_sa/RSN10590_ComalTX11-10-20_IU.CCM.BH2.00.AT2",
        ],
        "at2",
    ),
    (
        "gmprocess_testdata/fdsn/ci38457511/CI.CLC..HNZ.mseed",
        [
            "gmprocess_testdata/fdsn/ci38457511/CI.CLC..HNN.mseed",
            "gmprocess_testdata/fdsn/ci38457511/CI.CLC..HNE.mseed",
            "gmprocess_testdata/fdsn/ci38457511/CI.CLC.xml",
        ],
        "mseed",
    ),
]
CASES += [
    (
        f"{TADAS_ZIP}:20230206011732_0120_ap_AAD_Acc_U.asc",
        [
            f"{TADAS_ZIP}:20230206011732_0120_ap_AAD_Acc_E.asc",
            f"{TADAS_ZIP}:20230206011732_0120_ap_AAD_Acc_N.asc",
        ],
        "auto",
    ),
    (
        f"{DATOOLS}/UD2/FKSH111103122215.UD2.MSEED",
        [
            f"{DATOOLS}/EW2/FKSH111103122215.EW2.MSEED",
            f"{DATOOLS}/NS2/FKSH111103122215.NS2.MSEED",
        ],
        "mseed",
    ),
    ("knet_kiknet_dscp_sevov/20240421061900.knt.tar.gz", [], "archive"),
]
MAX_BYTES = 60_000  # corrupt within the header and first samples; keeps examples fast


@st.composite
def corruption(draw):
    case = draw(st.sampled_from(CASES))
    data = _bytes(case[0])
    kind = draw(st.sampled_from(["truncate", "flip", "splice", "garbage"]))
    if kind == "truncate":
        data = data[: draw(st.integers(0, min(len(data), MAX_BYTES)))]
    elif kind == "flip":
        for _ in range(draw(st.integers(1, 20))):
            i = draw(st.integers(0, min(len(data), MAX_BYTES) - 1))
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
    elif kind == "splice":
        i = draw(st.integers(0, min(len(data), MAX_BYTES)))
        data = data[:i] + draw(st.binary(max_size=200)) + data[i:]
    else:
        data = draw(st.binary(max_size=2000))
    return case, data


def _bytes(name: str) -> bytes:
    """A real file's bytes; ``archive:member`` read from inside the archive."""
    inside = split_member(REALDATA / name)
    if inside is None:
        return (REALDATA / name).read_bytes()
    archive, member = inside
    with zipfile.ZipFile(archive) as zf:
        return zf.read(member)


def _local(tmp: Path, name: str) -> Path:
    """Where a case file goes in the scratch folder (channel folders kept for miniSEED)."""
    relative = Path(name.split(":")[-1])
    keep = 2 if relative.parent.name in ("EW2", "NS2", "UD2") else 1
    path = Path(tmp).joinpath(*relative.parts[-keep:])
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _read(path: Path, fmt: str) -> list:
    if fmt == "archive":  # a corrupt NIED archive: read every member
        return [r for m in list_members(path) for r in _read_member(path, m)]
    return read_record(path, fmt)


def _read_member(archive: Path, member: str) -> list:
    try:
        return read_record(f"{archive}:{member}")
    except ReaderError as exc:
        if "corrupt or truncated archive" in exc.reason:
            raise
        return []


@settings(
    max_examples=80,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(corruption())
def test_only_reader_errors(example) -> None:
    (target, siblings, fmt), data = example
    with tempfile.TemporaryDirectory() as tmp:
        for sibling in siblings:
            _local(tmp, sibling).write_bytes(_bytes(sibling))
        path = _local(tmp, target)
        path.write_bytes(data)
        try:
            records = _read(path, fmt)
        except ReaderError as exc:
            assert exc.reason
            return
        for record in records:  # a corruption the reader survives must still be sane
            assert record.waveform_mps2.shape[0] == 3
            assert record.sampling_rate_hz > 0
