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
