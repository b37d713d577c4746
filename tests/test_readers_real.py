"""Readers against the real records of ../shared/realdata: values checked against headers,
PROVENANCE.md and INDEX.csv (skipped when DEEPVS30_REALDATA is missing)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.errors import ReaderError
from deepvs30.ingest import default_realdata_dir
from deepvs30.readers import (
    FORMATS,
    RawRecord,
    detect_format,
    group_archive,
    read_group,
    read_record,
)
from deepvs30.readers.archives import opened, split_member
from deepvs30.readers.picking import pick_arrivals
from realdata_index import LABEL_IN_FILE, READS_WHOLE

REALDATA = default_realdata_dir()
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(
        not (REALDATA / "INDEX.csv").is_file(),
        reason=f"real records not found at {REALDATA} (set DEEPVS30_REALDATA)",
    ),
]


def _index() -> pd.DataFrame:
    return pd.read_csv(REALDATA / "INDEX.csv", dtype={"station": str})


def _reader_of(fmt_text: str) -> str | None:
    name = next((v for k, v in READS_WHOLE.items() if fmt_text.startswith(k)), None)
    assert name is None or name in FORMATS, name
    return name


def _supported_rows() -> list[pd.Series]:
    if not (REALDATA / "INDEX.csv").is_file():
        return []  # collected without real data: the module is skipped (pytestmark)
    index = _index()
    return [
        row for _, row in index.iterrows() if _reader_of(row["format"]) and row["n_components"] == 3
    ]


def _names(row: pd.Series) -> set[str]:
    """INDEX ``files`` as the readers name them (``archive:member`` kept)."""
    return {str(REALDATA / f) for f in row["files"].split(";") if not f.endswith(".metadata")}


@functools.lru_cache(maxsize=1)
def _archive_records(archive: str) -> dict[frozenset[str], RawRecord]:
    """Every record of one archive, read once, by its member names."""
    with opened(archive) as source:
        groups, _, _, _ = group_archive(source)
        records = {}
        for group in groups:
            try:
                found = read_group(group, source)
            except ReaderError:
                continue
            for record in found:
                records[frozenset(record.source_files)] = record
        return records


def _read_row(row: pd.Series) -> RawRecord:
    first = row["files"].split(";")[0]
    inside = split_member(REALDATA / first)
    if inside is None:
        (record,) = read_record(REALDATA / first)
        return record
    records = _archive_records(str(inside[0]))
    assert frozenset(_names(row)) in records, f"{first}: not read from its archive"
    return records[frozenset(_names(row))]


@pytest.mark.parametrize("row", _supported_rows(), ids=lambda r: r["files"].split(";")[0])
def test_index_row_reads_with_stated_station_rate_and_label(row: pd.Series) -> None:
    record = _read_row(row)
    assert record.station_code == row["station"]
    assert record.sampling_rate_hz == pytest.approx(row["sampling_rate_hz"])
    assert record.waveform_mps2.shape[0] == 3
    assert set(record.source_files) == _names(row)
    if str(row["vs30_method"]).startswith(LABEL_IN_FILE):  # label carried by the file
        assert record.vs30_mps == pytest.approx(float(row["vs30"]))
    if record.vs30_mps is not None:  # a file's own label is the one INDEX gives
        assert record.vs30_mps == pytest.approx(float(row["vs30"]))
    if "BOREHOLE" in str(row["notes"]):
        assert record.sensor == "borehole"
    else:
        assert record.sensor == "surface"


AFAD_MAT = sorted((REALDATA / "afad_cnnlstm_deepeq").glob("*.mat"))


@pytest.mark.parametrize("path", AFAD_MAT, ids=lambda p: p.name)
def test_afad_mat_units_arrivals_and_metadata(path: Path) -> None:
    import scipy.io as sio

    (record,) = read_record(path)
    eq = sio.loadmat(str(path))["EQ"][0, 0]["anEQ"][0, 0]
    pga_gal = np.asarray(eq["pga"], dtype=float).ravel()  # N-S, E-W, U-D
    np.testing.assert_allclose(
        np.abs(record.waveform_mps2).max(axis=1), pga_gal[[2, 0, 1]] * 0.01, rtol=1e-9
    )
    row = _index().set_index("files").loc[f"afad_cnnlstm_deepeq/{path.name}"]
    p_s, s_s = map(float, re.search(r"Ptime=([\d.]+)s Stime=([\d.]+)s", row["notes"]).groups())
    assert record.p_arrival_s == pytest.approx(p_s)
    assert record.s_arrival_s == pytest.approx(s_s)
    assert record.sampling_rate_hz == 100.0
    assert record.event_depth_km == pytest.approx(float(eq["depth"][0, 0]) / 1000)
    assert record.event_origin_time == row["event_time_utc"]
    assert record.event_magnitude == pytest.approx(float(row["magnitude"].split()[0]))


def _z_over_h(record, start_s: float, length_s: float) -> float:
    """RMS of Z over the geometric mean RMS of N and E in a window (offset removed)."""
    fs = record.sampling_rate_hz
    window = record.waveform_mps2[:, int(start_s * fs) : int((start_s + length_s) * fs)]
    rms = np.sqrt(((window - window.mean(axis=1, keepdims=True)) ** 2).mean(axis=1))
    return float(rms[0] / np.sqrt(rms[1] * rms[2]))


def test_afad_mat_components_are_zne_by_their_physics() -> None:
    """Not the file's own labels: S waves shake the horizontals (Z/H < 1 in the 3 s after S),
    and P waves the vertical more than S waves do. A Z swapped with N or E fails both."""
    s_ratio = [_z_over_h(r, r.s_arrival_s, 3.0) for (r,) in map(read_record, AFAD_MAT)]
    p_ratio = [_z_over_h(r, r.p_arrival_s, 1.5) for (r,) in map(read_record, AFAD_MAT)]
    assert all(ratio < 1.0 for ratio in s_ratio), s_ratio
    assert sum(p > s for p, s in zip(p_ratio, s_ratio, strict=True)) >= 4, (p_ratio, s_ratio)


def test_afad_mat_picker_agrees_with_given_arrivals() -> None:
    errors_s = []
    for path in AFAD_MAT:
        (record,) = read_record(path)
        picks = pick_arrivals(record)
        assert picks.p_status == "picked"
        errors_s.append(abs(picks.p_arrival_s - record.p_arrival_s))
    assert sum(e < 0.5 for e in errors_s) >= 4, errors_s


NSMN = sorted(REALDATA.glob("afad_*/**/*.txt")) + sorted(
    REALDATA.glob("gmprocess_testdata/nsmn/*/*.txt")
)


@pytest.mark.parametrize("path", NSMN, ids=lambda p: p.name)
def test_nsmn_peak_matches_header_raw_pga(path: Path) -> None:
    (record,) = read_record(path)
    header = record.extra["pga_header_gal"]
    ns, ew, ud = map(float, re.findall(r"\)\s*([\d.]+)", header))
    np.testing.assert_allclose(
        np.abs(record.waveform_mps2).max(axis=1), np.array([ud, ns, ew]) * 0.01, atol=1e-8
    )
    assert record.station_network == "TK"
    assert record.start_time is not None


KNET = sorted(REALDATA.glob("**/*.NS")) + sorted(REALDATA.glob("**/*.NS[12]"))


@pytest.mark.parametrize("path", KNET, ids=lambda p: p.name)
def test_knet_scale_factor_and_header_peak(path: Path) -> None:
    (record,) = read_record(path)
    lines = path.read_text(errors="replace").splitlines()
    gal, counts = map(float, re.search(r"(\d+)\(gal\)/(\d+)", lines[13]).groups())
    # header "Max. Acc." is the offset-free peak in gal, rounded to 0.001
    wf = record.waveform_mps2
    peak_gal = np.abs(wf - wf.mean(axis=1, keepdims=True)).max(axis=1) * 100
    header = record.extra["pga_header_mps2"]
    np.testing.assert_allclose(peak_gal, [header[c] * 100 for c in "ZNE"], atol=1.5e-3)
    # the N component in m/s² is integer counts times the scale factor
    raw_counts = np.array(" ".join(lines[17:]).split(), dtype=float)
    np.testing.assert_allclose(wf[1], raw_counts * gal / counts * 0.01, rtol=1e-12)
    assert record.source_format == ("kiknet" if path.suffix[-1] in "12" else "knet")


def test_kiknet_borehole_and_surface_kept_apart() -> None:
    folder = REALDATA / "gmprocess_testdata/kiknet/usp000hzq8"
    (bore,) = read_record(folder / "NGNH311106302345.UD1")
    (surf,) = read_record(folder / "NGNH311106302345.UD2")
    assert (bore.sensor, surf.sensor) == ("borehole", "surface")
    assert all(f.endswith("1") for f in bore.source_files)
    assert all(f.endswith("2") for f in surf.source_files)


def test_itaca_header_pga_and_metadata_label() -> None:
    (record,) = read_record(REALDATA / "gmpe_smtk_laquila/16833/16833_V.cor.acc")
    assert record.station_code == "AQG"
    assert record.vs30_mps == pytest.approx(684.842)
    assert record.vs30_method == "measured"
    assert record.sampling_rate_hz == 200.0
    assert record.waveform_mps2.shape == (3, 59220)
    assert np.abs(record.waveform_mps2[1]).max() == pytest.approx(5.0693293, rel=1e-6)  # NS
    assert record.hyp_distance_km == pytest.approx(10.0)


def test_esm_units_and_header_pga() -> None:
    path = REALDATA / "gmprocess_testdata/esm/us60004wsq/HI.ARS1..HNZ.D.20190728.160908.C.ACC.ASC"
    (record,) = read_record(path)
    header = record.extra["pga_header_mps2"]
    np.testing.assert_allclose(
        np.abs(record.waveform_mps2).max(axis=1), [header[c] for c in "ZNE"], rtol=1e-5
    )
    assert (record.station_network, record.station_code) == ("HI", "ARS1")
    assert record.start_time == "2019-07-28T16:09:19.870000"


def test_esm_single_component_is_refused_with_reason() -> None:
    path = REALDATA / "gmprocess_testdata/esm/usp000hpnf/20101114230825_3104_ap_RawAcc_E.asc"
    with pytest.raises(ReaderError, match="1 component"):
        read_record(path)


def test_mseed_with_stationxml_is_acceleration_in_zne() -> None:
    (record,) = read_record(REALDATA / "gmprocess_testdata/fdsn/ci38457511/CI.CLC..HNZ.mseed")
    assert (record.station_network, record.station_code) == ("CI", "CLC")
    assert record.sampling_rate_hz == 100.0
    assert record.station_latitude_deg == pytest.approx(35.8157, abs=1e-3)
    # Ridgecrest M7.1 at China Lake: strong shaking, well below 2 g
    pga_g = np.abs(record.waveform_mps2 - record.waveform_mps2.mean(1, keepdims=True)).max() / 9.81
    assert 0.1 < pga_g < 2.0


def test_at2_in_g_and_channel_mapping() -> None:
    path = REALDATA / "gmprocess_testdata/high_freq_sa/RSN10590_ComalTX11-10-20_IU.CCM.BHZ.00.AT2"
    (record,) = read_record(path)
    first = float(path.read_text().splitlines()[4].split()[0])
    assert record.waveform_mps2[0, 0] == pytest.approx(first * 9.80665)
    assert (record.station_network, record.station_code) == ("IU", "CCM")
    assert record.sampling_rate_hz == pytest.approx(20.0)
    assert "1/2 taken as N/E" in record.orientation_note


def test_at2_with_two_horizontals_is_refused() -> None:
    with pytest.raises(ReaderError, match="need 3"):
        read_record(REALDATA / "gmprocess_testdata/peer/RSN763_LOMAP_GIL067.AT2")


@pytest.mark.parametrize(
    ("relpath", "reason"),
    [
        ("gmprocess_testdata/csn/ci38457511/20190706031952.CJ.T001230.HNE.sac", "unknown units"),
        ("gmprocess_testdata/dmg/ci15481673/CIWLT.V2", "unsupported"),
        ("gmprocess_testdata/usc/ci3144585/017m30lw.s0a", "unsupported"),
    ],
)
def test_unreadable_real_files_say_why(relpath: str, reason: str) -> None:
    with pytest.raises(ReaderError, match=reason):
        read_record(REALDATA / relpath)


def test_format_detection_by_content() -> None:
    assert detect_format(AFAD_MAT[0]) == "afad-mat"
    assert detect_format(NSMN[0]) == "nsmn"
    assert detect_format(KNET[0]) in ("knet", "kiknet")
    assert detect_format(REALDATA / "gmpe_smtk_laquila/16833/16833_H1.cor.acc") == "itaca"


# --- archives, AFAD TADAS and datools miniSEED (sources packed as users receive them) -------

TADAS = REALDATA / "afad_kahramanmaras2023_karatas/20230206011732.zip"
DATOOLS = REALDATA / "kiknet_datools_berse/examples/data/Example_2/FKSH11/small_strain"


def _index_row(first_file: str) -> pd.Series:
    index = _index()
    (i,) = np.flatnonzero(index["files"].str.split(";").str[0] == first_file)
    return index.iloc[i]


def test_tadas_zip_member_units_station_event_and_first_sample() -> None:
    import zipfile

    member = "20230206011732_0120_ap_AAD_Acc_E.asc"
    (record,) = read_record(f"{TADAS}:{member}")
    row = _index_row(f"{TADAS.relative_to(REALDATA)}:{member}")
    assert set(record.source_files) == _names(row)
    assert (
        (record.station_network, record.station_code)
        == ("TK", "0120")
        == (
            row["network"],
            row["station"],
        )
    )
    assert record.source_format == "esm"
    assert record.event_id == "13194" and f"event_id={record.event_id}" in row["notes"]
    assert record.event_magnitude == 7.7 and record.event_magnitude_type == "Mw"
    assert (record.event_latitude_deg, record.event_longitude_deg) == (37.288, 37.043)
    assert record.event_origin_time == row["event_time_utc"]
    first = re.search(r"first_sample=(\S+ \S+);", row["notes"])[1]  # 2023/02/06 01:17:33.6307180
    assert record.start_time == first.replace("/", "-").replace(" ", "T")[:26]
    assert record.vs30_mps == float(row["vs30"])
    assert record.extra["preamble"]["AAD_FILTER_TYPE"] == "BUTTERWORTH"
    with zipfile.ZipFile(TADAS) as zf:  # cm/s^2 in the file -> m/s^2
        lines = zf.read(member).decode("latin-1").splitlines()
    samples_cm = np.array([float(v) for v in lines[lines.index("USER4: ") + 1 :]])
    np.testing.assert_allclose(record.waveform_mps2[2], samples_cm * 0.01, rtol=1e-12)
    header = record.extra["pga_header_mps2"]  # PGA_CM/S^2 is within 3% of the processed peak
    np.testing.assert_allclose(
        np.abs(record.waveform_mps2).max(axis=1), [header[c] for c in "ZNE"], rtol=0.03
    )


def test_tadas_components_one_sample_short_are_cut_to_the_shortest() -> None:
    (record,) = read_record(f"{TADAS}:20230206011732_2713_ap_AAD_Acc_N.asc")  # NDATA 2879/2878
    assert record.waveform_mps2.shape == (3, 2878)
    assert record.extra["trimmed_tail_samples"] == 1


@pytest.mark.parametrize("path", sorted(DATOOLS.glob("UD2/*.MSEED")), ids=lambda p: p.name)
def test_datools_mseed_grouped_from_channel_folders_in_g(path: Path) -> None:
    import obspy

    (record,) = read_record(path)
    row = _index_row(
        str(path.relative_to(REALDATA)).replace("/UD2/", "/EW2/").replace(".UD2.", ".EW2.")
    )
    assert set(record.source_files) == _names(row)
    assert (record.station_network, record.station_code) == ("BO", row["station"])
    assert record.sampling_rate_hz == row["sampling_rate_hz"]
    assert record.sensor == "surface" and record.extra["header_station"] == "FKSH1"
    starts = re.search(r"trace starts \(UTC\)=(\S+)/(\S+)/(\S+);", row["notes"]).groups()
    assert record.start_time[:19] == max(starts)  # the window all three channels cover
    ud = obspy.read(str(path))[0]  # g -> m/s^2, from the common start on
    offset = int(
        round((obspy.UTCDateTime(record.start_time) - ud.stats.starttime) * ud.stats.sampling_rate)
    )
    np.testing.assert_allclose(
        record.waveform_mps2[0], ud.data[offset : offset + record.n_samples] * 9.80665, rtol=1e-12
    )


def test_knet_archive_member_scale_factor() -> None:
    import tarfile

    archive = REALDATA / "knet_kiknet_dscp_sevov/20240421061900.knt.tar.gz"
    (record,) = read_record(f"{archive}:WKY0012404210619.NS")
    assert record.source_files == tuple(
        f"{archive}:WKY0012404210619.{c}" for c in ("UD", "NS", "EW")
    )
    with tarfile.open(archive) as tf:
        lines = tf.extractfile("WKY0012404210619.NS").read().decode("latin-1").splitlines()
    gal, counts = map(float, re.search(r"(\d+)\(gal\)/(\d+)", lines[13]).groups())
    raw_counts = np.array(" ".join(lines[17:]).split(), dtype=float)
    np.testing.assert_allclose(
        record.waveform_mps2[1], raw_counts * gal / counts * 0.01, rtol=1e-12
    )
    assert record.station_code == "WKY001" and record.source_format == "knet"


def test_archive_read_as_a_whole_is_refused_with_a_hint() -> None:
    with pytest.raises(ReaderError, match="ARCHIVE:MEMBER"):
        read_record(TADAS)
