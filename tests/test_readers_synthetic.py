"""Edge cases on small files written by the tests: each bad input is a ReaderError with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.errors import ReaderError
from deepvs30.ingest import QUARANTINE_FILE, IngestParams, ingest_paths, read_quarantine
from deepvs30.readers import read_record
from deepvs30.readers.stations import StationTable, load_station_csv

NSMN_HEADER = """STRONG GROUND MOTION RECORDS OF TURKIYE
PLACE                   : TEST
EARTHQUAKE DATE         : 2020/01/02 03:04:05 (GMT)
EPICENTER COORDINATES   : 38.00000N-27.00000E
EARTHQUAKE DEPTH (km)   : 10.0
EARTHQUAKE MAGNITUDE    : 5.0 Mw
STATION ID              : {station}
STATION COORDINATES     : 38.10000N-27.10000E
STATION ALTITUDE (m)    : 10
RECORDER TYPE           : test
RECORDER SERIAL NO      : 1
RECORD TIME             : 02/01/2020 03:04:00.000000 (GMT)
NUMBER OF DATA          : {n}
{dt_line}
RAW PGA VALUES (gal)    : (N-S) 1 (E-W) 1 (U-D) 1
Copyright EARTHQUAKE DEPARTMENT
DISASTER AND EMERGENCY MANAGEMENT PRESIDENCY
       N-S          E-W          U-D
"""


def write_nsmn(
    path: Path,
    data_gal: np.ndarray,
    station: str = "9999",
    dt_line: str = "SAMPLING INTERVAL (sec) : 0.01",
) -> Path:
    header = NSMN_HEADER.format(station=station, n=len(data_gal), dt_line=dt_line)
    rows = "\n".join(" ".join(f"{v:.6f}" for v in row) for row in data_gal)
    path.write_text(header + rows + "\n", encoding="latin-1")
    return path


def quake(n: int = 3000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 0.01, (n, 3))
    data[1000:1500] += rng.normal(0, 5.0, (500, 3))  # an "event" in gal
    return data


def test_nsmn_synthetic_values_and_units(tmp_path: Path) -> None:
    data = quake()
    (record,) = read_record(write_nsmn(tmp_path / "a.txt", data))
    np.testing.assert_allclose(record.waveform_mps2, data[:, [2, 0, 1]].T * 0.01, atol=1e-8)
    assert record.sampling_rate_hz == 100.0
    assert record.start_time == "2020-01-02T03:04:00"
    assert record.event_depth_km == 10.0


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: np.where(np.arange(d.size).reshape(d.shape) == 7, np.nan, d), "NaN"),
        (lambda d: d * 1e6, "wrong units"),
        (lambda d: d[:5], "only 5 samples"),
    ],
)
def test_nsmn_bad_values(tmp_path: Path, mutate, reason: str) -> None:
    path = write_nsmn(tmp_path / "bad.txt", mutate(quake()))
    with pytest.raises(ReaderError, match=reason):
        read_record(path)


def test_nsmn_missing_sampling_rate(tmp_path: Path) -> None:
    path = write_nsmn(tmp_path / "nodt.txt", quake(), dt_line="SAMPLING INTERVAL (sec) :")
    with pytest.raises(ReaderError, match="SAMPLING INTERVAL"):
        read_record(path)


def test_nsmn_truncated_rows(tmp_path: Path) -> None:
    path = write_nsmn(tmp_path / "cut.txt", quake())
    text = path.read_text(encoding="latin-1")
    path.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n", encoding="latin-1")
    with pytest.raises(ReaderError, match="truncated"):
        read_record(path)


def _knet_file(path: Path, direction: str, counts: np.ndarray, fs: str = "100Hz") -> None:
    header = [
        "Origin Time       2020/01/02 12:00:00",
        "Lat.              36.0",
        "Long.             140.0",
        "Depth. (km)       10",
        "Mag.              5.0",
        "Station Code      TST001",
        "Station Lat.      36.1",
        "Station Long.     140.1",
        "Station Height(m) 10",
        "Record Time       2020/01/02 12:00:10",
        f"Sampling Freq(Hz) {fs}",
        "Duration Time(s)  30",
        f"Dir.              {direction}",
        "Scale Factor      3920(gal)/6182761",
        "Max. Acc. (gal)   1.000",
        "Last Correction   2020/01/02 12:00:10",
        "Memo.",
    ]
    rows = [" ".join(str(int(v)) for v in counts[i : i + 8]) for i in range(0, len(counts), 8)]
    path.write_text("\n".join(header + rows) + "\n")


def test_knet_mismatched_component_lengths(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for direction, suffix, n in (("N-S", "NS", 1600), ("E-W", "EW", 1600), ("U-D", "UD", 1592)):
        _knet_file(tmp_path / f"TST0012001022100.{suffix}", direction, rng.integers(-9, 9, n))
    with pytest.raises(ReaderError, match="different lengths"):
        read_record(tmp_path / "TST0012001022100.NS")


def test_knet_scale_factor_applied(tmp_path: Path) -> None:
    counts = np.arange(-800, 800)
    for direction, suffix in (("N-S", "NS"), ("E-W", "EW"), ("U-D", "UD")):
        _knet_file(tmp_path / f"TST0012001022100.{suffix}", direction, counts)
    (record,) = read_record(tmp_path / "TST0012001022100.UD")
    np.testing.assert_allclose(record.waveform_mps2[0], counts * 3920 / 6182761 * 0.01)
    assert record.start_time == "2020-01-02T02:59:55"  # 12:00:10 JST - 15 s delay - 9 h


def _write_afad_mat(path: Path, p_s: float, s_s: float) -> Path:
    import scipy.io as sio

    accel = quake(3000)
    eq = {
        "anEQ": {
            "Accel": accel,
            "sampling": 0.01,
            "statID": 1234,
            "statco": [38.0, 27.0],
            "epicenter": [38.1, 27.1],
            "depth": 12000,
            "magnitudeval": 4.0,
            "magnitudetype": " ML",
            "Vs30": 400,
            "Rhyp": 15.0,
            "Ptime": p_s,
            "Stime": s_s,
            "pga": np.abs(accel).max(axis=0),
        }
    }
    sio.savemat(str(path), {"EQ": eq})
    return path


def test_afad_mat_p_after_s_is_refused(tmp_path: Path) -> None:
    path = _write_afad_mat(tmp_path / "20200102030405_1234.mat", p_s=12.0, s_s=10.0)
    with pytest.raises(ReaderError, match="P arrival 12.0 s is not before S"):
        read_record(path)


def test_afad_mat_synthetic_fields(tmp_path: Path) -> None:
    (record,) = read_record(_write_afad_mat(tmp_path / "20200102030405_1234.mat", 10.0, 12.5))
    assert (record.station_code, record.vs30_mps, record.event_depth_km) == ("1234", 400.0, 12.0)
    assert (record.p_arrival_s, record.s_arrival_s) == (10.0, 12.5)
    assert record.event_origin_time == "2020-01-02T03:04:05"


def test_esm_unknown_units(tmp_path: Path) -> None:
    for comp in "ENZ":
        lines = [
            "EVENT_NAME: T",
            "EVENT_ID: T1",
            "NETWORK: XX",
            "STATION_CODE: ABC",
            "DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS: 20200101_000000.000",
            "SAMPLING_INTERVAL_S: 0.01",
            "NDATA: 100",
            f"STREAM: HN{comp}",
            "UNITS: furlongs/fortnight",
        ]
        (tmp_path / f"XX.ABC..HN{comp}.D.20200101.000000.C.ACC.ASC").write_text(
            "\n".join(lines + ["0.1"] * 100) + "\n"
        )
    with pytest.raises(ReaderError, match="unknown units"):
        read_record(tmp_path / "XX.ABC..HNZ.D.20200101.000000.C.ACC.ASC")


def test_empty_and_binary_files(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "junk.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ReaderError, match="empty"):
        read_record(tmp_path / "empty.txt")
    with pytest.raises(ReaderError, match="unrecognised"):
        read_record(tmp_path / "junk.bin")


def test_station_csv_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "stations.csv"
    path.write_text("network,station,vs30_mps\nTK,9999,400\n")
    with pytest.raises(ReaderError, match=r"lacks column\(s\) \['lat', 'lon', 'vs30_method'\]"):
        load_station_csv(path)


def test_ingest_joins_labels_quarantines_unlabelled_and_duplicates(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    write_nsmn(raw / "a_9999.txt", quake(seed=1), station="9999")
    write_nsmn(raw / "b_9999_copy.txt", quake(seed=1), station="9999")  # same station + start
    write_nsmn(raw / "c_8888.txt", quake(seed=2), station="8888")  # not in the table
    (raw / "d_broken.txt").write_text("STRONG GROUND MOTION RECORDS OF TURKIYE\nrubbish\n")
    stations = tmp_path / "stations.csv"
    pd.DataFrame(
        [
            {
                "network": "TK",
                "station": "9999",
                "lat": 38.1,
                "lon": 27.1,
                "vs30_mps": 412.5,
                "vs30_method": "measured",
            }
        ]
    ).to_csv(stations, index=False)
    out = tmp_path / "ds"
    summary = ingest_paths([raw], out, stations_csv=stations, params=IngestParams(pick=False))
    assert (summary.input_items, summary.ingested, summary.quarantined) == (4, 1, 3)
    metadata = pd.read_csv(out / "metadata.csv", dtype={"station_code": str})
    assert metadata["station_vs30_mps"].tolist() == [412.5]
    assert metadata["station_vs30_method"].tolist() == ["measured"]
    reasons = dict(read_quarantine(out / QUARANTINE_FILE).values)
    assert reasons[str(raw / "c_8888.txt")] == "no Vs30 label"
    assert reasons[str(raw / "b_9999_copy.txt")].startswith("duplicate of")
    assert "N-S E-W U-D" in reasons[str(raw / "d_broken.txt")]

    out2 = tmp_path / "ds2"
    summary2 = ingest_paths(
        [raw], out2, stations_csv=stations, include_unlabelled=True, params=IngestParams(pick=False)
    )
    assert (summary2.ingested, summary2.quarantined) == (2, 2)
    metadata2 = pd.read_csv(out2 / "metadata.csv", dtype={"station_code": str})
    assert metadata2.set_index("station_code")["station_vs30_mps"].isna().to_dict() == {
        "9999": False,
        "8888": True,
    }


def test_station_table_lookup_by_code_when_network_differs() -> None:
    table = StationTable(
        [
            pd.DataFrame(
                [
                    {
                        "network": "",
                        "station": "ABC",
                        "lat": 1.0,
                        "lon": 2.0,
                        "vs30_mps": 300.0,
                        "vs30_method": "proxy",
                        "table": "t",
                    }
                ]
            )
        ]
    )
    assert table.lookup("XX", "ABC").vs30_mps == 300.0
    assert table.lookup("XX", "ZZZ") is None


# --- AFAD TADAS (ESM with an AAD_* preamble) and datools miniSEED --------------------------

TADAS_PREAMBLE = [
    "AAD_Filtered_TADAS_FILE",
    "AAD_BASELINE_CORRECTION: BASELINE REMOVED",
    "AAD_FILTER_TYPE: BUTTERWORTH",
    "AAD_FILTER_ORDER: 1",
    "AAD_LOW_CUT_FREQUENCY_HZ: 0.025",
    "AAD_HIGH_CUT_FREQUENCY_HZ: 40.0",
]


def write_esm(
    path: Path,
    samples_cm: np.ndarray,
    stream: str,
    station: str = "0120",
    vs30: str = "439",
    preamble: bool = True,
) -> Path:
    """One DYNA 1.2 component file (cm/s^2), with the TADAS preamble by default."""
    header = [
        "EVENT_NAME: 202302060117",
        "EVENT_ID: 13194",
        "EVENT_DATE_YYYYMMDD: 2023/02/06",
        "EVENT_TIME_HHMMSS: 01:17:32.00000",
        "EVENT_LATITUDE_DEGREE: 37.288",
        "EVENT_LONGITUDE_DEGREE: 37.043",
        "EVENT_DEPTH_KM: 8.6",
        "MAGNITUDE_W: 7.7",
        "MAGNITUDE_L: ",
        "NETWORK: TK",
        f"STATION_CODE: {station}",
        "STATION_LATITUDE_DEGREE: 36.77006",
        "STATION_LONGITUDE_DEGREE: 35.79005",
        "SENSOR_DEPTH_M: ",
        f"VS30_M/S: {vs30}",
        "DATE_TIME_FIRST_SAMPLE_YYYYMMDD_HHMMSS: 2023/02/06 01:17:33.6307180",
        "SAMPLING_INTERVAL_S: 0.01",
        f"NDATA: {len(samples_cm)}",
        f"STREAM: {stream}",
        "UNITS: cm/s^2",
        f"PGA_CM/S^2: {np.abs(samples_cm).max():.6f}",
        "ORIGINAL_DATA_MEDIATOR_CITATION: : AFAD - Disaster And Emergency Management Presidency",
        "USER4: ",
    ]
    lines = (TADAS_PREAMBLE if preamble else []) + header + [f"{v:.12g}" for v in samples_cm]
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


def write_tadas_record(
    folder: Path, station: str = "0120", vs30: str = "439", seed: int = 0
) -> dict[str, Path]:
    """``<event>_<station>_ap_AAD_Acc_{E,N,U}.asc``; returns the paths by component letter."""
    data = quake(2000, seed) * 10  # cm/s^2
    return {
        c: write_esm(
            folder / f"20230206011732_{station}_ap_AAD_Acc_{c}.asc",
            data[:, i],
            f"HN{s}",
            station,
            vs30,
        )
        for i, (c, s) in enumerate((("E", "E"), ("N", "N"), ("U", "Z")))
    }


def test_tadas_preamble_units_station_event_and_first_sample(tmp_path: Path) -> None:
    paths = write_tadas_record(tmp_path)
    (record,) = read_record(paths["N"])  # format found by content behind the preamble
    assert record.source_format == "esm"
    data = quake(2000, 0) * 10
    np.testing.assert_allclose(record.waveform_mps2, data[:, [2, 1, 0]].T * 0.01, rtol=1e-10)
    assert (record.station_network, record.station_code, record.vs30_mps) == ("TK", "0120", 439.0)
    assert (record.event_id, record.event_magnitude, record.event_magnitude_type) == (
        "13194",
        7.7,
        "Mw",
    )
    assert (record.event_latitude_deg, record.event_longitude_deg) == (37.288, 37.043)
    assert record.event_origin_time == "2023-02-06T01:17:32"
    assert record.start_time == "2023-02-06T01:17:33.630718"  # 7th fraction digit dropped
    assert record.extra["preamble"]["AAD_HIGH_CUT_FREQUENCY_HZ"] == "40.0"


def test_tadas_without_header_vs30_is_labelled_by_station_code(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    write_tadas_record(tmp_path / "raw", station="0120", vs30="None")
    stations = tmp_path / "stations.csv"
    stations.write_text(
        "network,station,lat,lon,vs30_mps,vs30_method\nTK,0120,36.77,35.79,440.5,unknown\n"
    )
    out = tmp_path / "ds"
    summary = ingest_paths(
        [tmp_path / "raw"], out, stations_csv=stations, params=IngestParams(pick=False)
    )
    assert (summary.ingested, summary.quarantined) == (1, 0)
    metadata = pd.read_csv(out / "metadata.csv", dtype={"station_code": str})
    assert metadata[["station_code", "station_vs30_mps"]].values.tolist() == [["0120", 440.5]]


def test_esm_preamble_without_dyna_header_is_not_esm(tmp_path: Path) -> None:
    path = tmp_path / "x_AAD_Acc_E.asc"
    path.write_text("\n".join(TADAS_PREAMBLE + ["1.0"] * 20) + "\n")
    with pytest.raises(ReaderError, match="unrecognised"):
        read_record(path)


def write_datools_mseed(
    top: Path,
    stem: str = "TSTH012001021200",
    header_station: str = "TSTH0",
    starts_s: tuple[float, float, float] = (0.0, 0.5, 1.0),
    encoding: str = "FLOAT64",
    sensor: str = "2",
    t0: str = "2020-01-02T03:00:00",
) -> dict[str, Path]:
    """datools-style ``<top>/{EW2,NS2,UD2}/<stem>.<CH>.MSEED``, samples in g; by channel."""
    import obspy

    paths = {}
    for i, (direction, start_s) in enumerate(zip(("EW", "NS", "UD"), starts_s, strict=True)):
        channel = direction + sensor
        data_g = (quake(3000, seed=i)[:, 0] / 981.0).astype(np.float64)
        if encoding.startswith("INT"):
            data_g = np.round(data_g * 1e6).astype(np.int32)
        header = {"network": "BO", "station": header_station, "channel": channel}
        header |= {"sampling_rate": 100.0, "starttime": obspy.UTCDateTime(t0) + start_s}
        trace = obspy.Trace(data_g, header=header)
        folder = top / channel
        folder.mkdir(parents=True, exist_ok=True)
        paths[channel] = folder / f"{stem}.{channel}.MSEED"
        trace.write(str(paths[channel]), format="MSEED", encoding=encoding)
    return paths


def test_datools_mseed_channels_in_sibling_folders_make_one_record(tmp_path: Path) -> None:
    paths = write_datools_mseed(tmp_path / "TSTH01" / "small_strain")
    (record,) = read_record(paths["UD2"])
    assert set(record.source_files) == {str(p) for p in paths.values()}
    assert (record.station_network, record.station_code) == ("BO", "TSTH01")  # from the name
    assert record.extra["header_station"] == "TSTH0"
    assert record.sensor == "surface"
    assert record.start_time == "2020-01-02T03:00:01"  # the window all three cover
    n = record.n_samples
    assert n == 3000 - 100
    ud_g = quake(3000, seed=2)[:, 0] / 981.0  # UD starts last: whole; EW loses its first 1 s
    ew_g = quake(3000, seed=0)[:, 0] / 981.0
    np.testing.assert_allclose(record.waveform_mps2[0], ud_g[:n] * 9.80665, rtol=1e-12)
    np.testing.assert_allclose(record.waveform_mps2[2], ew_g[100 : 100 + n] * 9.80665, rtol=1e-12)


def test_datools_mseed_ingest_groups_and_labels_by_file_name_code(tmp_path: Path) -> None:
    top = tmp_path / "TSTH01" / "small_strain"
    write_datools_mseed(top, stem="TSTH012001021200")
    write_datools_mseed(top, stem="TSTH012001031200", t0="2020-01-03T03:00:00")
    stations = tmp_path / "stations.csv"
    stations.write_text(
        "network,station,lat,lon,vs30_mps,vs30_method\nBO,TSTH01,36.0,140.0,239.83,unknown\n"
    )
    out = tmp_path / "ds"
    summary = ingest_paths([tmp_path / "TSTH01"], out, stations_csv=stations,
                           params=IngestParams(pick=False))  # fmt: skip
    assert (summary.input_files, summary.input_items, summary.ingested) == (6, 2, 2)
    metadata = pd.read_csv(out / "metadata.csv", dtype={"station_code": str})
    assert metadata["station_vs30_mps"].tolist() == [239.83, 239.83]
    assert metadata["trace_source_format"].tolist() == ["mseed", "mseed"]
    assert sorted(metadata["trace_start_time"]) == ["2020-01-02T03:00:01", "2020-01-03T03:00:01"]


def test_datools_mseed_integer_samples_are_counts_refused(tmp_path: Path) -> None:
    paths = write_datools_mseed(tmp_path / "S", encoding="INT32")
    with pytest.raises(ReaderError, match="unknown units"):
        read_record(paths["NS2"])


def test_datools_mseed_borehole_channels(tmp_path: Path) -> None:
    paths = write_datools_mseed(tmp_path / "S", sensor="1")
    (record,) = read_record(paths["EW1"])
    assert record.sensor == "borehole"
