"""Malformed bytes and truncations of real files: readers raise ReaderError and nothing else."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deepvs30.errors import ReaderError
from deepvs30.ingest import default_realdata_dir
from deepvs30.readers import read_record

REALDATA = default_realdata_dir()
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (REALDATA / "INDEX.csv").is_file(),
        reason=f"real records not found at {REALDATA} (set DEEPVS30_REALDATA)",
    ),
]
# (file to corrupt, its sibling files copied intact, format to force or "auto")
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
MAX_BYTES = 60_000  # corrupt within the header and first samples; keeps examples fast


@st.composite
def corruption(draw):
    case = draw(st.sampled_from(CASES))
    data = (REALDATA / case[0]).read_bytes()
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


@settings(
    max_examples=50,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(corruption())
def test_only_reader_errors(example) -> None:
    (target, siblings, fmt), data = example
    with tempfile.TemporaryDirectory() as tmp:
        for sibling in siblings:
            shutil.copy(REALDATA / sibling, Path(tmp) / Path(sibling).name)
        path = Path(tmp) / Path(target).name
        path.write_bytes(data)
        try:
            records = read_record(path, fmt)
        except ReaderError as exc:
            assert exc.reason
            return
        for record in records:  # a corruption the reader survives must still be sane
            assert record.waveform_mps2.shape[0] == 3
            assert record.sampling_rate_hz > 0
