"""The fast CLI: help paths that import no heavy library, and the parsed station-table cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from deepvs30.readers import stations

HEAVY = ("torch", "mlflow", "pandas", "scipy", "obspy", "optuna")


def imported_after(argv: list[str]) -> dict[str, bool]:
    """Run ``deepvs30 <argv>`` (it exits on --help) in a fresh interpreter; which of HEAVY it
    imported."""
    code = (
        "import sys\n"
        "from deepvs30.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(','.join(str(m in sys.modules) for m in {HEAVY!r}), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "usage: deepvs30" in done.stdout
    flags = done.stderr.strip().splitlines()[-1].split(",")
    return dict(zip(HEAVY, (f == "True" for f in flags), strict=True))


@pytest.mark.parametrize("argv", [["--help"], ["predict", "--help"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    imported = imported_after(argv)
    assert not any(imported.values()), imported


def test_predict_help_still_lists_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deepvs30", "predict", "--help"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    for option in ("--model", "--stations", "--input-format", "--fallback-model", "knet"):
        assert option in done.stdout


# --- station-table cache -----------------------------------------------------------------

FLATFILE = (
    "STATION,STATION_LAT,STATION_LON,VS30(m/s),EQID\n"
    "AOM001,40.8,140.7,474.23,1\n"
    "AOM001,40.8,140.7,474.23,2\n"
    "NGNH31,36.6,138.2,389.0,3\n"
    "1028,34.2,-118.5,258.9,4\n"  # a Californian code: not joined by code alone
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("DEEPVS30_CACHE", str(folder))
    return folder


def cached_files(cache) -> list:
    return sorted((cache / "stations").glob("*.parquet"))


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("DEEPVS30_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert stations.cache_dir() == tmp_path / "xdg" / "deepvs30"
    monkeypatch.setenv("DEEPVS30_CACHE", str(tmp_path / "mine"))
    assert stations.cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("DEEPVS30_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert stations.cache_dir() == Path.home() / ".cache" / "deepvs30"


def test_cached_table_is_the_parsed_table(tmp_path, cache, monkeypatch) -> None:
    path = tmp_path / "flatfile.csv"
    path.write_text(FLATFILE)
    parsed = stations._parse_ngaw2_japan(path)
    first = stations.load_ngaw2_japan(path)
    assert len(cached_files(cache)) == 1
    assert list(first["station"]) == ["AOM001", "NGNH31"]
    assert list(first["vs30_mps"]) == [474.23, 389.0]

    def no_parse(path):
        raise AssertionError("parsed again although cached")

    no_parse.__name__ = "_parse_ngaw2_japan"  # the cache key names the parser
    monkeypatch.setattr(stations, "_parse_ngaw2_japan", no_parse)
    again = stations.load_ngaw2_japan(path)
    pd.testing.assert_frame_equal(again, parsed)
    pd.testing.assert_frame_equal(first, parsed)


def test_edited_file_is_parsed_again(tmp_path, cache) -> None:
    path = tmp_path / "flatfile.csv"
    path.write_text(FLATFILE)
    assert len(stations.load_ngaw2_japan(path)) == 2
    stat = path.stat()
    path.write_text(FLATFILE.replace("389.0", "391.5"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: the hash decides
    edited = stations.load_ngaw2_japan(path)
    assert list(edited["vs30_mps"]) == [474.23, 391.5]
    assert len(cached_files(cache)) == 2


def test_corrupt_cache_entry_is_parsed_around(tmp_path, cache) -> None:
    path = tmp_path / "flatfile.csv"
    path.write_text(FLATFILE)
    expected = stations.load_ngaw2_japan(path)
    (entry,) = cached_files(cache)
    entry.write_bytes(b"not parquet")
    pd.testing.assert_frame_equal(stations.load_ngaw2_japan(path), expected)


def test_unreadable_table_is_still_a_reader_error(tmp_path, cache) -> None:
    with pytest.raises(stations.ReaderError, match="unreadable NGA-West2 flatfile"):
        stations.load_ngaw2_japan(tmp_path / "missing.csv")
    with pytest.raises(stations.ReaderError, match="unreadable AFAD station list"):
        stations.load_afad_station_list(tmp_path / "missing.xlsx")
    assert cached_files(cache) == []


@pytest.mark.realdata
def test_real_station_tables_come_back_identical(realdata_dir, cache) -> None:
    meta = realdata_dir / "metadata/earthquake_selection_wheel"
    for load, parse, name in (
        (stations.load_afad_station_list, stations._parse_afad_station_list, "stations.xlsx"),
        (stations.load_ngaw2_japan, stations._parse_ngaw2_japan, "NGA-West2_flatfile.csv"),
    ):
        parsed = parse(meta / name)
        load(meta / name)  # parses and writes the cache
        pd.testing.assert_frame_equal(load(meta / name), parsed)
    assert len(cached_files(cache)) == 2


def test_ingest_refuses_an_empty_input_path(tmp_path: Path, capsys) -> None:
    """`deepvs30 ingest "$DEEPVS30_REALDATA"` with the variable unset must not ingest the cwd."""
    from deepvs30.cli import main

    out = tmp_path / "out"
    assert main(["ingest", "", "--out", str(out)]) == 2
    assert "input path is empty" in capsys.readouterr().err
    assert not out.exists()


def test_given_arrivals_need_no_travel_times() -> None:
    """A record whose source gives P and S (AFAD .mat) is predicted without loading TauP, which
    drags in matplotlib: most of a second of `deepvs30 predict` on one file."""
    code = (
        "import sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from test_picking import synthetic\n"
        "from deepvs30.readers.picking import given_or_picked\n"
        "picks = given_or_picked(synthetic(p_arrival_s=2.0, s_arrival_s=6.0,\n"
        "    event_latitude_deg=38.0, event_longitude_deg=27.0, event_depth_km=10.0,\n"
        "    station_latitude_deg=38.2, station_longitude_deg=27.1))\n"
        "print(picks.p_status, picks.s_status, 'obspy.taup' in sys.modules)\n"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
        cwd=root,
    )  # fmt: skip
    assert done.stdout.split() == ["given", "given", "False"]
