"""deepvs30 predict: raw files -> per-record and per-station Vs30, skip reasons, bad input.

The model is the tiny two-epoch test model (tests/model_fixture.py): its numbers only need to
be sane and consistent, not accurate.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.cli import main
from deepvs30.metrics import NEHRP_CLASSES
from deepvs30.pyfunc import InputError, Vs30PyFunc, predict_frame, records_from_frame
from model_fixture import served_champion

AFAD_MAT = "afad_cnnlstm_deepeq"
BODRUM = "afad_bodrum2017_erdemkose/data/20_07_2017_bodrum"
KNET = "gmprocess_testdata/knet/us2000cnnl"


@pytest.fixture(autouse=True)
def _no_tracking_env(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def bundle(models):
    from deepvs30.inference import ModelBundle

    return ModelBundle.load(models.good)


def params_file(models, realdata: Path | None = None) -> Path:
    meta = realdata / "metadata/earthquake_selection_wheel" if realdata else None
    ingest = {
        "afad_station_list": str(meta / "stations.xlsx") if meta else "",
        "ngaw2_flatfile": str(meta / "NGA-West2_flatfile.csv") if meta else "",
    }
    return models.params_file("served", ingest=ingest)


def run_predict(models, paths, out: Path, *args: str, realdata: Path | None = None) -> int:
    uri = served_champion(models)
    argv = ["--params", str(params_file(models, realdata)), "predict", *map(str, paths)]
    return main([*argv, "--model", uri, "--out", str(out), *args])


# --- real files ---------------------------------------------------------------------------


@pytest.mark.realdata
def test_predict_real_afad_and_knet_files(models, realdata_dir, tmp_path, capsys) -> None:
    afad = tmp_path / "afad"
    shutil.copytree(realdata_dir / AFAD_MAT, afad, ignore=shutil.ignore_patterns("*.md"))
    (afad / "20990101000000_9999.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated\x00\x01")
    out = tmp_path / "pred.json"
    code = run_predict(
        models, [afad, realdata_dir / BODRUM / "20170720223109_4801.txt", realdata_dir / KNET],
        out, "--format", "json", realdata=realdata_dir,
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    records = pd.DataFrame(result["records"])
    stations = pd.DataFrame(result["stations"]).set_index("station")
    skipped = pd.DataFrame(result["skipped"])

    # six AFAD .mat, one AFAD ASCII (P/S picked), nine K-NET stations (P/S picked); a record
    # whose picks fail is listed as skipped with the picker's note instead
    not_read = skipped[skipped["record_id"] == ""]
    picks_failed = skipped[skipped["record_id"] != ""]
    assert len(records) + len(picks_failed) == 6 + 1 + 9
    assert len(records) >= 6 + 9
    assert picks_failed["reason"].str.contains("picker").all()
    assert set(records["source_format"]) >= {"afad-mat", "knet"}
    for frame in (records, stations[stations["n_records"] > 0]):
        assert frame["vs30_mps"].between(80, 3000).all()
        assert (frame["vs30_p16_mps"] < frame["vs30_mps"]).all()
        assert (frame["vs30_mps"] < frame["vs30_p84_mps"]).all()
        assert frame["nehrp_class"].isin(NEHRP_CLASSES).all()
        assert np.allclose(np.exp(frame["ln_vs30"]), frame["vs30_mps"], rtol=1e-9)
    assert stations["n_records"].sum() == len(records)

    # labels joined from the files and the station tables (INDEX.csv values)
    assert stations.loc["TK.6501", "label_vs30_mps"] == pytest.approx(363)
    assert stations.loc["BO.AOM001", "label_vs30_mps"] == pytest.approx(474.23, abs=0.01)
    # a station's Vs30 is the median of its records' ln predictions (TK.4801: .mat + ASCII)
    for station, group in records.groupby("station"):
        assert stations.loc[station, "n_records"] == len(group)
        assert stations.loc[station, "ln_vs30"] == pytest.approx(np.median(group["ln_vs30"]))

    assert len(not_read) == 1
    assert not_read.iloc[0]["source_file"].endswith("20990101000000_9999.mat")
    assert "not an AFAD EQ.anEQ .mat struct" in not_read.iloc[0]["reason"]
    shown = capsys.readouterr().out
    assert "TK.4801" in shown and "skipped" in shown and "20990101000000_9999.mat" in shown


@pytest.mark.realdata
def test_predict_csv_has_record_station_and_skipped_rows(models, realdata_dir, tmp_path) -> None:
    bogus = tmp_path / "notes.dat"
    bogus.write_text("not a strong-motion record\n")
    out = tmp_path / "pred.csv"
    paths = [realdata_dir / AFAD_MAT / "20120106001648_6501.mat", bogus, tmp_path / "missing"]
    assert run_predict(models, paths, out, "--format", "csv") == 0
    table = pd.read_csv(out)
    assert table["level"].value_counts().to_dict() == {"record": 1, "station": 1, "skipped": 2}
    reasons = table.loc[table["level"] == "skipped", "reason"].tolist()
    assert any("unsupported or unrecognised format" in r for r in reasons)
    assert any("no such file" in r for r in reasons)
    station = table[table["level"] == "station"].iloc[0]
    assert station["station"] == "TK.6501" and station["n_records"] == 1


# --- no real files needed -----------------------------------------------------------------


def test_predict_of_nothing_usable_says_so(models, tmp_path) -> None:
    bogus = tmp_path / "x.dat"
    bogus.write_text("hello\n")
    out = tmp_path / "p.json"
    assert run_predict(models, [bogus], out, "--format", "json") == 1
    result = json.loads(out.read_text())
    assert result["records"] == [] and result["stations"] == []
    assert "unsupported or unrecognised format" in result["skipped"][0]["reason"]


def test_predict_refuses_unknown_input_format_and_model(models, tmp_path) -> None:
    with pytest.raises(SystemExit) as exc:
        run_predict(models, [tmp_path], tmp_path / "p.csv", "--input-format", "wav")
    assert exc.value.code == 2
    params = params_file(models)
    argv = ["--params", str(params), "predict", str(tmp_path), "--model", "models:/nope@champion"]
    assert main(argv) == 2


def row(samples: int = 3000, fs: float | None = 100.0, **changes) -> dict:
    rng = np.random.default_rng(1)
    t = np.arange(samples) / 100.0
    env = np.where(t > 5, np.exp(-(t - 5) / 4), 0.0)
    out = {
        "record_id": "r", "station": "XX.TEST", "sampling_rate_hz": fs, "p_arrival_s": 5.0,
        "s_arrival_s": 8.0, **{c: 0.01 * env * rng.standard_normal(samples) for c in "zne"},
    }  # fmt: skip
    return {**out, **changes}


BAD_ROWS = {
    "NaN samples": (row(z=np.r_[np.zeros(2999), np.nan]), "component z has 1 non-finite"),
    "mismatched lengths": (row(n=np.zeros(100)), "differ in length (z 3000, n 100, e 3000)"),
    "missing sampling rate": (row(fs=None), "missing or invalid sampling_rate_hz"),
    "negative sampling rate": (row(fs=-100.0), "missing or invalid sampling_rate_hz"),
    "2-D component": (row(e=np.zeros((2, 1500))), "component e has shape (2, 1500)"),
    "not numbers": (row(z=["a"] * 3000), "component z is not an array of numbers"),
    "empty component": (row(z=[], n=[], e=[]), "component z is empty"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_rows_are_input_errors_naming_the_row(case: str) -> None:
    bad, message = BAD_ROWS[case]
    frame = pd.DataFrame([row(), bad])
    with pytest.raises(InputError, match="row 1: .*" + message.split(" (")[0]):
        records_from_frame(frame)


def test_missing_columns_and_empty_input_are_input_errors() -> None:
    with pytest.raises(InputError, match=r"lacks columns \['e'\]"):
        records_from_frame(pd.DataFrame([row()]).drop(columns="e"))
    with pytest.raises(InputError, match="no rows"):
        records_from_frame(pd.DataFrame(columns=["sampling_rate_hz", "z", "n", "e"]))


def test_pyfunc_turns_input_errors_into_400s(bundle) -> None:
    from mlflow.exceptions import MlflowException

    model = Vs30PyFunc()
    model.bundle = bundle
    with pytest.raises(MlflowException, match="differ in length") as exc:
        model.predict(None, pd.DataFrame([row(n=np.zeros(10))]))
    assert exc.value.error_code == "INVALID_PARAMETER_VALUE"
    assert exc.value.get_http_status_code() == 400


def test_records_the_model_must_not_answer_are_skipped_with_a_reason(bundle) -> None:
    frame = pd.DataFrame([
        row(),
        row(samples=500),  # 5 s
        row(fs=20.0),  # Nyquist 10 Hz < the 25 Hz band edge
        row(p_arrival_s=None, s_arrival_s=None),  # the model wants P/S
    ])  # fmt: skip
    out = predict_frame(bundle, frame)
    assert out.loc[0, "skipped"] == "" and 80 < out.loc[0, "vs30_mps"] < 3000
    assert "shorter than 10 s" in out.loc[1, "skipped"]
    assert "Nyquist" in out.loc[2, "skipped"]
    assert "no P/S" in out.loc[3, "skipped"]
    assert out.loc[1:, "vs30_mps"].isna().all()


def test_one_bad_record_does_not_cost_the_others_their_answer(bundle) -> None:
    from deepvs30.predict import predict_inputs

    frame = pd.DataFrame([row(), row(z=np.full(3000, np.nan)), row()])
    frame["record_id"] = ["a", "b", "c"]
    out, skipped = predict_inputs(bundle, frame)
    assert out["record_id"].tolist() == ["a", "c"]
    reason = "component z has 3000 non-finite sample(s) (NaN/inf)"
    assert skipped == [{"record_id": "b", "station": "XX.TEST", "reason": reason}]


def test_records_without_arrivals_fall_back_to_a_model_without_ps(
    bundle, tiny_dataset, tmp_path
) -> None:
    """The P/S model skips a record without picks; a no-P/S fallback answers it, the output
    names the model behind each row, and a fallback that itself reads P/S is refused."""
    from dataclasses import replace

    from deepvs30.errors import ConfigError
    from deepvs30.predict import predict_inputs, with_fallback
    from deepvs30.prepare import PrepareParams, prepare
    from deepvs30.realbench import ridge_model
    from deepvs30.segment import FeatureParams

    prepared = (
        prepare(tiny_dataset, tmp_path / "prepared", PrepareParams()) and tmp_path / "prepared"
    )
    hv_features = FeatureParams(segmentation="pga_centred", ps_channel=False, window_s=10.0,
                                hv_bins=8, hv_window_s=10.0)  # fmt: skip
    fallback = ridge_model(prepared, hv_features)
    frame = pd.DataFrame([row(), row(p_arrival_s=None, s_arrival_s=None), row(samples=500)])
    frame["record_id"] = ["picked", "no_picks", "short"]
    out, _ = predict_inputs(with_fallback(bundle, fallback, "fallback"), frame)
    by_id = out.set_index("record_id")
    assert by_id.loc["picked", "answered_by"] == "model" and by_id.loc["picked", "skipped"] == ""
    assert by_id.loc["no_picks", "answered_by"] == "fallback"
    assert by_id.loc["no_picks", "skipped"] == ""
    assert 80 < by_id.loc["no_picks", "vs30_mps"] < 3000
    assert "shorter than" in by_id.loc["short", "skipped"]  # not a P/S reason: still skipped
    with pytest.raises(ConfigError, match="reads P/S"):
        with_fallback(bundle, replace(fallback, features=FeatureParams()), "ps model")
