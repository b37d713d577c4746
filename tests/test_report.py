"""deepvs30 predict --report: the pages say what the predict table says, list every skipped
record with its reason, show the windows the model saw, and stand alone (no outside reference).

The report is built by the command on small NSMN files (tests/report_helpers.py) with the tiny
two-epoch test model: its numbers only need to be the prediction's, not accurate.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.hvsr import HvParams, hv_peak, record_hv_peak
from deepvs30.inference import ModelBundle
from deepvs30.predict import predict_paths
from deepvs30.pyfunc import records_from_frame
from deepvs30.readers.stations import StationTable, load_station_csv
from deepvs30.report import page_names, station_views, write_report
from deepvs30.segment import pga_sample
from report_helpers import STATION_CSV, build_report, frames

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Tables (by id: rows of (text, data-value, href) cells), images and texts by id."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str | None, str | None]]]] = {}
        self.images: list[str] = []
        self.by_id: dict[str, str] = {}
        self._table: str | None = None
        self._cell: list | None = None
        self._open_ids: list[tuple[str, str, list[str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag == "td" and self._table is not None:
            self._cell = ["", a.get("data-value"), None]
        elif tag == "a" and self._cell is not None:
            self._cell[2] = a.get("href")
        elif tag == "img":
            self.images.append(a["src"] or "")
        if a.get("id"):
            self._open_ids.append((tag, a["id"], []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append(tuple(self._cell))
            self._cell = None
        elif tag == "table":
            self.tables[self._table] = [r for r in self.tables[self._table] if r]
            self._table = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            _, key, parts = self._open_ids.pop()
            self.by_id[key] = "".join(parts)

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[0] += data
        for _, _, parts in self._open_ids:
            parts.append(data)


@pytest.fixture(scope="module")
def built(models, tiny_dataset, tmp_path_factory):
    return build_report(tmp_path_factory.mktemp("report"), models, tiny_dataset)


@pytest.fixture(scope="module")
def bundle(models) -> ModelBundle:
    return ModelBundle.load(models.good)


@pytest.fixture(scope="module")
def prediction(built, bundle, tmp_path_factory):
    """The same prediction as the command's, as a Prediction with its inputs."""
    csv = tmp_path_factory.mktemp("stations") / "stations.csv"
    csv.write_text(STATION_CSV)
    stations = StationTable([load_station_csv(csv)])
    return predict_paths(bundle, [built.records_dir], stations=stations, model="tiny",
                         keep_inputs=True)  # fmt: skip


def page(report: Path, name: str) -> Page:
    return Page((report / name).read_text(encoding="utf-8"))


def station_pages(built) -> dict[str, str]:
    _, stations, _ = frames(built.result)
    return page_names(stations.index.tolist())


# --- the command --------------------------------------------------------------------------


def test_predict_report_writes_index_and_one_page_per_station(built) -> None:
    records, stations, _ = frames(built.result)
    assert built.exit_code == 0
    assert set(stations.index) == {"TK.9001", "TK.9002", "TK.9003"}
    assert len(records) == 4 and stations.loc["TK.9003", "n_records"] == 0
    pages = sorted(p.name for p in built.dir.glob("*.html"))
    assert pages == sorted(["index.html", *station_pages(built).values()])
    rows = page(built.dir, "index.html").tables["stations"]
    assert len(rows) == len(stations)
    assert [r[0][0] for r in rows] == stations.index.tolist()
    assert [r[0][2] for r in rows] == [station_pages(built)[s] for s in stations.index]
    assert not list(built.dir.parent.glob(".report.tmp-*"))


def test_station_pages_and_index_show_the_predict_numbers(built) -> None:
    _, stations, _ = frames(built.result)
    index = {r[0][0]: r for r in page(built.dir, "index.html").tables["stations"]}
    for station, s in stations.iterrows():
        shown = page(built.dir, station_pages(built)[station])
        row = index[station]
        assert float(row[1][1]) == s["n_records"] and float(row[2][1]) == s["n_skipped"]
        if not s["n_records"]:
            assert "prediction" not in shown.by_id
            assert row[3][1] == "" and row[5][0] == "–"
            continue
        text = " ".join(shown.by_id["prediction"].split())
        assert f"Vs30 {s['vs30_mps']:.0f} m/s" in text
        assert f"{s['vs30_p16_mps']:.0f}–{s['vs30_p84_mps']:.0f} m/s" in text
        assert f"NEHRP class {s['nehrp_class']}" in text
        assert float(row[3][1]) == pytest.approx(s["vs30_mps"], rel=1e-12)
        assert float(row[4][1]) == pytest.approx(s["vs30_p16_mps"], rel=1e-12)
        assert row[4][0] == f"{s['vs30_p16_mps']:.0f}–{s['vs30_p84_mps']:.0f}"
        assert row[5][0] == s["nehrp_class"]


def test_residuals_are_ln_pred_over_label(built) -> None:
    records, stations, _ = frames(built.result)
    index = {r[0][0]: r for r in page(built.dir, "index.html").tables["stations"]}
    labelled = stations["label_vs30_mps"].notna()
    assert labelled.to_dict() == {"TK.9001": True, "TK.9002": False, "TK.9003": False}
    s = stations.loc["TK.9001"]
    expected = math.log(s["vs30_mps"] / 300.0)
    assert float(index["TK.9001"][6][1]) == 300.0
    assert float(index["TK.9001"][7][1]) == pytest.approx(expected, rel=1e-12)
    assert index["TK.9001"][7][0] == f"{expected:+.3f}"
    assert index["TK.9002"][7][1] == "" and index["TK.9002"][7][0] == "–"
    shown = page(built.dir, station_pages(built)["TK.9001"])
    assert f"= {expected:+.3f}" in shown.by_id["label"]
    by_record = {r[0][0]: r for r in shown.tables["records"]}
    for rec in records[records["station"] == "TK.9001"].itertuples():
        assert float(by_record[rec.record_id][9][1]) == pytest.approx(
            math.log(rec.vs30_mps / 300.0), rel=1e-12
        )


def test_every_skipped_record_appears_with_its_reason(built) -> None:
    _, _, skipped = frames(built.result)
    assert len(skipped) == 2
    for row in skipped.itertuples():
        if row.station:
            table = page(built.dir, station_pages(built)[row.station]).tables["skipped"]
            cells = [(r[0][0], r[2][0]) for r in table]
        else:
            table = page(built.dir, "index.html").tables["not-read"]
            cells = [("–", r[1][0]) for r in table if r[0][0] == row.source_file]
        assert (row.record_id or "–", row.reason) in cells
    reasons = " ".join(skipped["reason"])
    assert "shorter than 10 s" in reasons and "unsupported or unrecognised format" in reasons


def test_every_image_is_a_png_in_the_report(built) -> None:
    records, stations, _ = frames(built.result)
    seen: set[Path] = set()
    for html_file in built.dir.glob("*.html"):
        for src in Page(html_file.read_text(encoding="utf-8")).images:
            path = (built.dir / src).resolve()
            assert path.is_relative_to(built.dir.resolve()), src
            data = path.read_bytes()
            assert data.startswith(PNG_MAGIC) and len(data) > 1000, src
            seen.add(path)
    for station, s in stations.iterrows():
        images = page(built.dir, station_pages(built)[station]).images
        assert len(images) == (s["n_records"] + 1 if s["n_records"] else 0)  # windows + H/V
    assert page(built.dir, "index.html").images == ["img/map.png"]
    assert seen == {p.resolve() for p in (built.dir / "img").iterdir()}


def test_no_outside_reference_anywhere(built) -> None:
    for path in built.dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes().lower()
            assert b"http://" not in data and b"https://" not in data, path
            if path.suffix == ".html":
                links = re.findall(rb"<link[^>]*>", data)
                assert links == [b'<link rel="icon" href="data:,">']  # no favicon request
                assert b'src="//' not in data and b"@import" not in data
                assert data.count(b"<script>") == 1  # the inline sorter, no src=


def test_stations_without_coordinates_are_listed_as_not_mapped(built) -> None:
    index = page(built.dir, "index.html")
    assert index.by_id["not-mapped"].split(": ", 1)[1].split(", ") == ["TK.9002"]
    assert "No coastlines" in (built.dir / "index.html").read_text(encoding="utf-8")


def test_a_station_without_usable_record_says_so(built) -> None:
    text = (built.dir / station_pages(built)["TK.9003"]).read_text(encoding="utf-8")
    assert "No prediction: no usable record" in text
    assert "Records used (0)" in text and "Records skipped (1)" in text


# --- the windows, arrivals and H/V shown are the model's ------------------------------------


def test_keeping_inputs_does_not_change_predictions(built, bundle, prediction) -> None:
    plain = predict_paths(bundle, [built.records_dir], model="tiny")
    assert plain.inputs is None
    pd.testing.assert_frame_equal(
        plain.records.drop(columns="label_vs30_mps"),
        prediction.records.drop(columns="label_vs30_mps"),
    )
    records, _, _ = frames(built.result)
    assert np.allclose(prediction.records["ln_vs30"], records["ln_vs30"], rtol=1e-12)


def test_the_window_shown_is_the_input_the_model_answered_from(bundle, prediction) -> None:
    inputs = prediction.inputs.set_index("record_id", drop=False)
    for row in prediction.records.itertuples():
        (raw,) = records_from_frame(inputs.loc[[row.record_id]])
        seen = bundle.seen_window(raw)
        x, s = bundle.normaliser.inputs(seen.x, seen.scalars)
        ln_vs30, sigma_ln = bundle.predict_inputs(x[None], s[None])
        assert ln_vs30[0] == pytest.approx(row.ln_vs30, abs=1e-6)
        assert sigma_ln[0] == pytest.approx(row.sigma_ln, abs=1e-6)
        fs = seen.fs_hz
        assert seen.p_sample / fs == pytest.approx(inputs.loc[row.record_id, "p_arrival_s"])
        assert seen.s_sample / fs == pytest.approx(inputs.loc[row.record_id, "s_arrival_s"])
        # the P/S channel is 1 from P to S, in the window's own samples
        n = seen.x.shape[1]
        edges = [int(np.clip(round(a) - seen.start_sample, 0, n))
                 for a in (seen.p_sample, seen.s_sample)]  # fmt: skip
        mask = np.zeros(n, bool)
        mask[edges[0] : edges[1]] = True
        np.testing.assert_array_equal(seen.x[3] > 0.5, mask)
        assert mask.any()


def test_station_pages_name_the_arrivals_and_their_status(built, bundle, prediction) -> None:
    inputs = prediction.inputs.set_index("record_id")
    statuses = set()
    for row in prediction.records.itertuples():
        text = (built.dir / page_names([row.station])[row.station]).read_text(encoding="utf-8")
        p_s = inputs.loc[row.record_id, "p_arrival_s"]
        s_s = inputs.loc[row.record_id, "s_arrival_s"]
        assert f"P {row.p_status} at {p_s:.2f} s" in text
        assert f"S {row.s_status} at {s_s:.2f} s" in text
        statuses |= {row.p_status, row.s_status}
    assert statuses >= {"picked", "predicted"}


def test_station_hv_is_the_mean_of_the_records_curves(bundle, prediction) -> None:
    views = {v.station: v for v in station_views(prediction, {"tiny": bundle}, HvParams())}
    view = views["TK.9002"]
    assert len(view.records) == 2 and views["TK.9003"].hv is None
    curves = np.stack([r.hv.ln_hv for r in view.records])
    np.testing.assert_allclose(view.hv.ln_mean, curves.mean(axis=0))
    np.testing.assert_allclose(view.hv.ln_sd, curves.std(axis=0))
    assert view.hv.f0_hz == hv_peak(view.hv.freqs_hz, np.exp(view.hv.ln_mean)).f0_hz
    for rec in view.records:  # each record's f0 is prepare's H/V peak of that record
        record = rec.seen.record_mps2
        peak = record_hv_peak(record, rec.seen.fs_hz, rec.seen.s_sample, pga_sample(record),
                              HvParams())  # fmt: skip
        assert rec.hv.peak.f0_hz == peak.f0_hz


# --- writing ------------------------------------------------------------------------------


def _renamed(prediction, old: str, new: str):
    def swap(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(station=frame["station"].replace(old, new))

    skipped = swap(prediction.skipped)
    skipped.loc[skipped["station"] == new, "reason"] = "bad <b>file</b> & more"
    return replace(
        prediction, records=swap(prediction.records), stations=swap(prediction.stations),
        skipped=skipped, inputs=swap(prediction.inputs),
    )  # fmt: skip


def test_text_is_escaped(bundle, prediction, tmp_path) -> None:
    evil = '<script>alert("x")</script>&$\\frac$'  # "$": mathtext in the map's labels
    result = _renamed(prediction, "TK.9003", evil)
    out = write_report(result, {"tiny": bundle}, tmp_path / "report")
    texts = [p.read_text(encoding="utf-8") for p in out.glob("*.html")]
    assert all("<script>alert" not in t and "<b>file" not in t for t in texts)
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;$\\frac$" in index
    name = page_names(result.stations["station"].tolist())[evil]
    assert re.fullmatch(r"station-[A-Za-z0-9_.-]+\.html", name) and (out / name).is_file()
    shown = page(out, name)
    assert [r[2][0] for r in shown.tables["skipped"]] == ["bad <b>file</b> & more"]


def test_the_report_folder_is_replaced_whole_or_not_at_all(bundle, prediction, tmp_path) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "stale.html").write_text("old")
    with pytest.raises(KeyError, match="no bundle for model 'tiny'"):
        write_report(prediction, {"other": bundle}, out)
    assert [p.name for p in out.iterdir()] == ["stale.html"]
    write_report(prediction, {"tiny": bundle}, out)
    assert not (out / "stale.html").exists() and (out / "index.html").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    with pytest.raises(ValueError, match="keep_inputs"):
        write_report(replace(prediction, inputs=None), {"tiny": bundle}, out)


def test_predict_help_lists_the_report_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "deepvs30", "predict", "--help"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    assert "--report DIR" in done.stdout


def test_records_answered_by_a_fallback_name_their_model(bundle, prediction, tmp_path) -> None:
    records = prediction.records.copy()
    first = records.index[records["station"] == "TK.9001"][0]
    records.loc[first, "model"] = "fallback"
    result = replace(prediction, records=records)
    out = write_report(result, {"tiny": bundle, "fallback": bundle}, tmp_path / "report")
    assert "(fallback: <code>fallback</code>)" in (out / "index.html").read_text()
    rows = page(out, page_names(["TK.9001"])["TK.9001"]).tables["records"]
    assert [r[-1][0] for r in rows] == records.loc[
        records["station"] == "TK.9001", "model"
    ].tolist()
    plain = page(out, page_names(["TK.9002"])["TK.9002"]).tables["records"]
    assert {r[-1][0] for r in plain} == {"tiny"}
