"""The HTML report of ``deepvs30 predict --report DIR``: static, offline, one folder.

``index.html`` holds a sortable table of the stations and a map (longitude/latitude coloured by
predicted Vs30 and, where a label exists, by the residual ln(pred/label)); each station has a
page with its Vs30, 16–84% interval and NEHRP class, the records used and skipped (with the
reason), the window each record gave the model with the P/S arrivals it was given (and whether
each was given, picked, predicted or failed), and the station's earthquake H/V curve.

What the report shows comes from the prediction itself: the numbers from
:class:`deepvs30.predict.Prediction`, the windows from the bundle that answered each record
(:meth:`deepvs30.inference.ModelBundle.seen_window`, the prediction's own preprocessing and
segmentation), the H/V curves from :mod:`deepvs30.hvsr` (prepare's S-window H/V, params.yaml
``prepare.hv``). Figures are PNG (matplotlib, Agg); nothing refers outside the folder (no CDN,
no web fonts; the table-sorting script is inline). The folder is built beside ``DIR`` and
renamed into place, so a failure leaves ``DIR`` as it was.

``python -m deepvs30.report --screenshot DIR --out docs/img`` photographs a report's index and
one station page with headless Chromium (selenium, a dev extra).
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `deepvs30 predict --help` needs none of them
    import numpy as np
    import pandas as pd

    from deepvs30.hvsr import HvCurve, HvParams
    from deepvs30.inference import ModelBundle, SeenWindow
    from deepvs30.predict import Prediction

IMG_DIR = "img"
INDEX = "index.html"
TABLE = "predictions.csv"  # predict's own CSV (records, stations, skipped)
NEHRP_TEXT = "A > 1500, B 760–1500, C 360–760, D 180–360, E < 180 m/s"
DPI = 96
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


@dataclass
class RecordView:
    row: dict  # the record's row of Prediction.records
    seen: SeenWindow
    bundle: ModelBundle
    hv: HvCurve
    figure: str = ""  # file name under img/


@dataclass
class StationHv:
    freqs_hz: np.ndarray
    ln_hv: np.ndarray  # (n_records, n_freqs)
    ln_mean: np.ndarray
    ln_sd: np.ndarray
    f0_hz: float  # peak of the mean curve (deepvs30.hvsr.hv_peak)
    amplitude: float


@dataclass
class StationView:
    station: str
    page: str  # file name of its page
    summary: dict  # the station's row of Prediction.stations
    records: list[RecordView]
    skipped: pd.DataFrame
    hv: StationHv | None
    lat_deg: float | None
    lon_deg: float | None
    hv_figure: str = ""


# --- the report -------------------------------------------------------------------------------


def write_report(
    result: Prediction,
    bundles: Mapping[str, ModelBundle],
    out_dir: str | Path,
    hv: HvParams | None = None,
) -> Path:
    """Write the report of ``result`` (from ``predict_paths(..., keep_inputs=True)``) to
    ``out_dir``; ``bundles`` maps each value of the records' ``model`` column to its bundle.
    Replaces ``out_dir`` atomically; returns it."""
    from deepvs30.dataset import replace_dir, staging_dir
    from deepvs30.hvsr import HvParams

    if result.inputs is None:
        raise ValueError("the report needs the inputs: predict_paths(..., keep_inputs=True)")
    out_dir = Path(out_dir)
    tmp_dir = staging_dir(out_dir)  # and those of killed runs removed
    try:
        views = station_views(result, bundles, hv or HvParams())
        _write_all(result, views, hv or HvParams(), tmp_dir)
        replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return out_dir


def _write_all(result: Prediction, views: list[StationView], hv: HvParams, root: Path) -> None:
    (root / IMG_DIR).mkdir()
    for view in views:
        for k, rec in enumerate(view.records):
            rec.figure = f"{Path(view.page).stem}-record{k + 1}.png"
            plot_window(rec, root / IMG_DIR / rec.figure)
        if view.hv is not None:
            view.hv_figure = f"{Path(view.page).stem}-hv.png"
            plot_hv(view.hv, view.station, root / IMG_DIR / view.hv_figure)
        (root / view.page).write_text(station_page(view, result, hv), encoding="utf-8")
    from deepvs30.predict import to_csv

    (root / TABLE).write_text(to_csv(result), encoding="utf-8")
    mapped = [v for v in views if v.lat_deg is not None and v.lon_deg is not None]
    if mapped:
        plot_map(mapped, root / IMG_DIR / "map.png")
    (root / INDEX).write_text(index_page(result, views, bool(mapped)), encoding="utf-8")


# --- what to show -----------------------------------------------------------------------------


def station_views(
    result: Prediction, bundles: Mapping[str, ModelBundle], hv: HvParams
) -> list[StationView]:
    """One view per row of the station table, in its order, with its records' windows."""
    inputs = result.inputs.set_index("record_id", drop=False)
    pages = page_names(result.stations["station"].tolist())
    views = []
    for summary in result.stations.to_dict("records"):
        station = summary["station"]
        used = result.records[result.records["station"] == station]
        records = [record_view(row, inputs, bundles, hv) for row in used.to_dict("records")]
        lat, lon = _coordinates(inputs[inputs["station"] == station])
        views.append(StationView(
            station, pages[station], summary, records,
            result.skipped[result.skipped["station"] == station], station_hv(records), lat, lon,
        ))  # fmt: skip
    return views


def record_view(
    row: dict, inputs: pd.DataFrame, bundles: Mapping[str, ModelBundle], hv: HvParams
) -> RecordView:
    """The window the answering model saw, by its own code path, and the record's H/V."""
    from deepvs30.hvsr import record_hv_curve
    from deepvs30.pyfunc import records_from_frame
    from deepvs30.segment import pga_sample

    if row["model"] not in bundles:
        raise KeyError(f"record {row['record_id']}: no bundle for model {row['model']!r}")
    bundle = bundles[row["model"]]
    (raw,) = records_from_frame(inputs.loc[[row["record_id"]]])
    seen = bundle.seen_window(raw)
    record = seen.record_mps2
    curve = record_hv_curve(record, seen.fs_hz, seen.s_sample, pga_sample(record), hv)
    return RecordView(row, seen, bundle, curve)


def station_hv(records: list[RecordView]) -> StationHv | None:
    """Mean and sd of ln H/V over the station's records; f0 at the peak of the mean."""
    import numpy as np

    from deepvs30.hvsr import hv_peak

    if not records:
        return None
    freqs_hz = records[0].hv.freqs_hz
    ln_hv = np.stack([r.hv.ln_hv for r in records])
    ln_mean, ln_sd = ln_hv.mean(axis=0), ln_hv.std(axis=0)
    peak = hv_peak(freqs_hz, np.exp(ln_mean))
    return StationHv(freqs_hz, ln_hv, ln_mean, ln_sd, peak.f0_hz, peak.amplitude)


def _coordinates(rows: pd.DataFrame) -> tuple[float | None, float | None]:
    """The first finite latitude and longitude (degrees) among a station's records."""
    import numpy as np

    both = rows[["station_latitude_deg", "station_longitude_deg"]].astype(float).dropna()
    both = both[np.isfinite(both).all(axis=1)]
    if both.empty:
        return None, None
    return float(both.iloc[0, 0]), float(both.iloc[0, 1])


def page_names(stations: list[str]) -> dict[str, str]:
    """A distinct, file-system-safe page name per station id."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for station in stations:
        stem = "station-" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", station).strip(".") or "_")
        name, k = f"{stem}.html", 1
        while name.lower() in taken:
            k += 1
            name = f"{stem}-{k}.html"
        taken.add(name.lower())
        names[station] = name
    return names


def residual_ln(pred_mps: float, label_mps: float) -> float:
    """ln(pred/label); NaN where there is no label."""
    import math

    if not _finite(label_mps) or not _finite(pred_mps) or label_mps <= 0:
        return float("nan")
    return math.log(pred_mps / label_mps)


def _finite(value: object) -> bool:
    import math

    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


# --- figures --------------------------------------------------------------------------------


def _figure(width_in: float, height_in: float):
    """A matplotlib Figure on the Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _plain(text: str) -> str:
    """Text for a figure as it is: ``$`` would start matplotlib's mathtext."""
    return text.replace("$", r"\$")


def _save(fig, path: Path) -> None:
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})


def plot_window(view: RecordView, path: Path) -> None:
    """The preprocessed record's three components around the model window (shaded): the
    window in colour, the P/S arrivals the model got, the P/S channel and the H/V window."""
    import numpy as np

    seen, features = view.seen, view.bundle.features
    record, fs_hz = seen.record_mps2, seen.fs_hz
    n_window = seen.x.shape[1]
    win_s = (seen.start_sample / fs_hz, (seen.start_sample + n_window) / fs_hz)
    spans = [win_s]
    if seen.hv_span is not None:
        spans.append((seen.hv_span.start / fs_hz, seen.hv_span.stop / fs_hz))
    lo_s, hi_s = min(s[0] for s in spans), max(s[1] for s in spans)
    pad_s = 0.05 * (hi_s - lo_s)
    t_s = np.arange(record.shape[1]) / fs_hz
    shown = (t_s >= lo_s - pad_s) & (t_s <= hi_s + pad_s)
    inside = (t_s >= win_s[0]) & (t_s < win_s[1])
    mask = seen.x[3] > 0.5 if features.ps_channel else None
    t_window_s = (seen.start_sample + np.arange(n_window)) / fs_hz
    fig = _figure(9.0, 4.6)
    axes = fig.subplots(3, 1, sharex=True)
    for i, (ax, comp) in enumerate(zip(axes, "ZNE", strict=True)):
        ax.plot(t_s[shown], record[i, shown], color="0.65", lw=0.5)
        ax.plot(t_s[inside], record[i, inside], color="C0", lw=0.6)
        ax.axvspan(*win_s, color="#dbe7f5", zorder=0, label="model window")
        if seen.hv_span is not None:
            ax.axvspan(*spans[1], facecolor="none", edgecolor="C1", hatch="//", lw=0.0,
                       zorder=0, alpha=0.5, label="H/V window (model scalars)")  # fmt: skip
        if mask is not None and mask.any():
            band = {"color": "C2", "alpha": 0.15, "lw": 0, "label": "P/S channel = 1"}
            ax.fill_between(t_window_s, 0, 1, where=mask, transform=ax.get_xaxis_transform(),
                            **band)  # fmt: skip
        _arrival_lines(ax, seen, view.row)
        ax.set_ylabel(f"{comp} (m/s²)")
    axes[-1].set_xlabel("time from record start (s)")
    axes[-1].set_xlim(lo_s - pad_s, hi_s + pad_s)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=4, fontsize="small",
               frameon=False)  # fmt: skip
    fig.suptitle(_plain(_window_title(view)), x=0.01, ha="left", fontsize="medium")
    _save(fig, path)


def _arrival_lines(ax, seen: SeenWindow, row: dict) -> None:
    for phase, sample, colour in (("P", seen.p_sample, "C3"), ("S", seen.s_sample, "C4")):
        if sample is not None:
            status = row.get(f"{phase.lower()}_status") or "given"
            ax.axvline(sample / seen.fs_hz, color=colour, lw=1.0, ls="--",
                       label=_plain(f"{phase} ({status})"))  # fmt: skip


def _window_title(view: RecordView) -> str:
    f = view.bundle.features
    status = ", ".join(f"{p} {_text(view.row.get(f'{p.lower()}_status'))}" for p in "PS")
    return f"{view.row['record_id']}: {f.window_s:g} s {f.segmentation} window; {status}"


def plot_hv(hv: StationHv, station: str, path: Path) -> None:
    """Each record's H/V (grey), exp(mean ± sd of ln H/V) (black, band), f0 marked."""
    import numpy as np

    fig = _figure(6.4, 3.8)
    ax = fig.subplots()
    for curve in hv.ln_hv:
        ax.plot(hv.freqs_hz, np.exp(curve), color="0.55", lw=0.7, zorder=3)
    ax.fill_between(hv.freqs_hz, np.exp(hv.ln_mean - hv.ln_sd), np.exp(hv.ln_mean + hv.ln_sd),
                    color="C0", alpha=0.25, lw=0, label="mean ± 1 sd (ln H/V)")  # fmt: skip
    ax.plot(hv.freqs_hz, np.exp(hv.ln_mean), color="k", lw=1.4, label="mean", zorder=4)
    ax.axvline(hv.f0_hz, color="C3", ls="--", lw=1.0, label=f"f0 = {hv.f0_hz:.2f} Hz")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_ticks(ax.xaxis, ax.yaxis)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("H/V")
    ax.set_title(_plain(f"{station}: H/V of {len(hv.ln_hv)} record(s)"), fontsize="medium")
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    ax.legend(fontsize="small", frameon=False)
    _save(fig, path)


def _plain_ticks(*axes) -> None:
    """Log-axis tick labels as plain numbers (0.5, 2, 10), not powers of ten."""
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in axes:
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain if _few_decades(axis) else FuncFormatter(lambda *_: ""))


def _few_decades(axis) -> bool:
    import math

    lo, hi = sorted(axis.get_view_interval())
    return lo > 0 and math.log10(hi / lo) < 1.5


def plot_map(views: list[StationView], path: Path) -> None:
    """Stations at longitude/latitude coloured by predicted Vs30 (log scale) and, where labels
    exist, a second panel coloured by ln(pred/label). No coastlines (no offline map data)."""
    import numpy as np

    lon = np.array([v.lon_deg for v in views], dtype=float)
    lat = np.array([v.lat_deg for v in views], dtype=float)
    vs30 = np.array([_value(v.summary, "vs30_mps") for v in views])
    residual = np.array([_station_residual(v.summary) for v in views])
    panels = 2 if np.isfinite(residual).any() else 1
    fig = _figure(5.2 * panels + 0.6, 4.6)
    axes = np.atleast_1d(fig.subplots(1, panels))
    _map_panel(axes[0], lon, lat, vs30, "Vs30 (m/s), predicted", _vs30_norm(vs30), "viridis")
    if panels == 2:
        limit = max(float(np.nanmax(np.abs(residual))), 0.05)
        from matplotlib.colors import Normalize

        _map_panel(axes[1], lon, lat, residual, "ln(pred/measured)",
                   Normalize(-limit, limit), "RdBu_r")  # fmt: skip
    if len(views) <= 40:
        for ax in axes:
            for v, x, y in zip(views, lon, lat, strict=True):
                ax.annotate(_plain(v.station), (x, y), fontsize=6, xytext=(3, 3),
                            textcoords="offset points", color="0.3")  # fmt: skip
    _save(fig, path)


def _vs30_norm(vs30: np.ndarray):
    import numpy as np
    from matplotlib.colors import LogNorm

    finite = vs30[np.isfinite(vs30)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (100.0, 1000.0)
    if hi / lo < 1.2:
        lo, hi = lo / 1.1, hi * 1.1
    return LogNorm(lo, hi)


def _map_panel(ax, lon, lat, values, label: str, norm, cmap: str) -> None:
    import numpy as np

    known = np.isfinite(values)
    if (~known).any():
        ax.scatter(lon[~known], lat[~known], marker="x", color="0.5", s=20, label="no value")
        ax.legend(fontsize="small", loc="best", frameon=False)
    points = ax.scatter(lon[known], lat[known], c=values[known], norm=norm, cmap=cmap, s=36,
                        edgecolors="k", linewidths=0.4)  # fmt: skip
    bar = ax.figure.colorbar(points, ax=ax, label=label, shrink=0.85)
    from matplotlib.colors import LogNorm

    if isinstance(norm, LogNorm):
        _plain_ticks(bar.ax.yaxis)
    mean_lat = float(np.nanmean(lat))
    ax.set_aspect(1.0 / max(np.cos(np.radians(mean_lat)), 0.1), adjustable="datalim")
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.grid(True, lw=0.3, alpha=0.5)


# --- pages ----------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;
max-width:1100px;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f2f4f7}table.sortable th{cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
figure{margin:1em 0}figcaption{font-size:.85em;color:#555;max-width:900px}
img{max-width:100%;height:auto;border:1px solid #eee}
td.file{font-size:.85em;overflow-wrap:anywhere;min-width:14em}.big{font-size:1.2em}.muted{color:#666}.reason{font-family:ui-monospace,monospace;font-size:.9em}
"""

# Sorts a table.sortable by the clicked column: numbers by data-value (blank last), else text.
SORT_JS = """
(function () {
  function key(cell, numeric) {
    var raw = cell.hasAttribute("data-value") ? cell.getAttribute("data-value") : cell.textContent;
    if (!numeric) return raw.trim().toLowerCase();
    var x = parseFloat(raw);
    return isFinite(x) ? x : null;
  }
  function compare(a, b, asc) {
    if (a === b) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    return (a < b ? -1 : 1) * (asc ? 1 : -1);
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener("click", function () {
        var asc = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", asc ? "ascending" : "descending");
        var numeric = th.getAttribute("data-type") === "number";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r, s) {
          return compare(key(r.cells[col], numeric), key(s.cells[col], numeric), asc);
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<link rel="icon" href="data:,">\n'  # no icon: the browser asks for no favicon.ico
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SORT_JS}</script>\n</body>\n</html>\n"
    )


@dataclass(frozen=True)
class Cell:
    text: str
    value: float | None = None  # numeric cells: the exact value (sorting, tests)
    link: str = ""
    css: str = ""
    title: str = ""  # shown on hover (e.g. the full path of a shortened file name)


def _num(value: object, fmt: str = "{:.0f}") -> Cell:
    if not _finite(value):
        return Cell("–", float("nan"), css="num")
    return Cell(fmt.format(float(value)), float(value), css="num")  # type: ignore[arg-type]


def _td(cell: Cell) -> str:
    attrs = ""
    if cell.value is not None:
        attrs += f' data-value="{"" if not _finite(cell.value) else repr(cell.value)}"'
    if cell.css:
        attrs += f' class="{cell.css}"'
    if cell.title:
        attrs += f' title="{_e(cell.title)}"'
    text = "<br>".join(_e(line) for line in cell.text.split("\n"))
    if cell.link:
        text = f'<a href="{_e(cell.link)}">{text}</a>'
    return f"<td{attrs}>{text}</td>"


def html_table(
    table_id: str, headers: list[tuple[str, str]], rows: list[list[Cell]], sortable: bool = True
) -> str:
    """``headers``: (title, "number" | "text") per column."""
    head = "".join(f'<th data-type="{kind}" scope="col">{_e(title)}</th>'
                   for title, kind in headers)  # fmt: skip
    body = "\n".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    css = ' class="sortable"' if sortable else ""
    return (f'<table id="{_e(table_id)}"{css}>\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody>\n</table>")  # fmt: skip


def _files(value: object) -> Cell:
    """A record's files (``;``-separated paths) by name, the component files of one record
    as ``stem.{UD,NS,EW}``; the full paths on hover."""
    import os

    text = _text(value)
    if text == "–":
        return Cell(text)
    names = [Path(part).name or part for part in text.split(";")]
    stem = os.path.commonprefix(names)
    if len(names) > 1 and stem:
        return Cell(stem + "{" + ",".join(n[len(stem) :] for n in names) + "}", title=text,
                    css="file")  # fmt: skip
    return Cell("\n".join(names), title=text, css="file")


def _text(value: object) -> str:
    """A cell's text: "–" for a blank or missing value."""
    if value is None or (isinstance(value, float) and value != value) or str(value) == "":
        return "–"
    return str(value)


def _value(row: dict, key: str) -> float:
    value = row.get(key)
    return float(value) if _finite(value) else float("nan")


def _station_residual(summary: dict) -> float:
    return residual_ln(_value(summary, "vs30_mps"), _value(summary, "label_vs30_mps"))


def _interval(row: dict) -> Cell:
    lo, hi = _value(row, "vs30_p16_mps"), _value(row, "vs30_p84_mps")
    if not (_finite(lo) and _finite(hi)):
        return Cell("–", float("nan"), css="num")
    return Cell(f"{lo:.0f}–{hi:.0f}", lo, css="num")


STATION_HEADERS = [
    ("station", "text"), ("records", "number"), ("skipped", "number"), ("Vs30 (m/s)", "number"),
    ("16–84% (m/s)", "number"), ("NEHRP", "text"), ("measured (m/s)", "number"),
    ("ln(pred/measured)", "number"),
]  # fmt: skip


def _station_row(view: StationView) -> list[Cell]:
    s = view.summary
    return [
        Cell(view.station, link=view.page),
        _num(s["n_records"]),
        _num(s["n_skipped"]),
        _num(s["vs30_mps"]),
        _interval(s),
        Cell(_text(s["nehrp_class"]) if int(s["n_records"]) else "–"),
        _num(s["label_vs30_mps"]),
        _num(_station_residual(s), "{:+.3f}"),
    ]


def index_page(result: Prediction, views: list[StationView], mapped: bool) -> str:
    n_rec, n_skip = len(result.records), len(result.skipped)
    parts = [
        "<h1>Vs30 report</h1>",
        f"<p>Model <code>{_e(result.model)}</code>{_models_used(result)}: {n_rec} record(s) "
        f"used, {n_skip} skipped, {len(views)} station(s). A station's Vs30 is the median of "
        f"its records' ln predictions; NEHRP classes: {_e(NEHRP_TEXT)}. The table as CSV: "
        f'<a href="{TABLE}">{TABLE}</a>.</p>',
        _map_section(views, mapped),
        "<h2>Stations</h2>",
        "<p class=muted>Click a column title to sort.</p>",
        html_table("stations", STATION_HEADERS, [_station_row(v) for v in views]),
        _unread_section(result.skipped),
    ]
    return _page("Vs30 report", "\n".join(parts))


def _models_used(result: Prediction) -> str:
    others = sorted(set(result.records["model"].dropna()) - {result.model, ""})
    if not others:
        return ""
    return " (fallback: " + ", ".join(f"<code>{_e(m)}</code>" for m in others) + ")"


def _map_section(views: list[StationView], mapped: bool) -> str:
    missing = [v.station for v in views if v.lat_deg is None or v.lon_deg is None]
    parts = ["<h2>Map</h2>"]
    if mapped:
        parts.append(
            f'<figure><img src="{IMG_DIR}/map.png" alt="station map"><figcaption>Stations at '
            "their longitude and latitude, coloured by predicted Vs30 (log colour scale) and, "
            "where a measured Vs30 exists, by the residual ln(pred/measured) (red: predicted "
            "too high). Grey crosses: no value. No coastlines or borders: no map data is "
            "packaged for offline use.</figcaption></figure>"
        )
    else:
        parts.append("<p>No station has coordinates: nothing to map.</p>")
    if missing:
        names = ", ".join(_e(s) for s in missing)
        parts.append(f'<p id="not-mapped">Not mapped (no coordinates): {names}</p>')
    return "\n".join(parts)


def _unread_section(skipped: pd.DataFrame) -> str:
    """Files and records that belong to no station (unreadable files, missing paths)."""
    orphans = skipped[skipped["station"].fillna("") == ""]
    if orphans.empty:
        return ""
    rows = [[Cell(str(r["source_file"])), Cell(str(r["reason"]), css="reason")]
            for r in orphans.to_dict("records")]  # fmt: skip
    table = html_table("not-read", [("file", "text"), ("reason", "text")], rows)
    return f"<h2>Files not read ({len(orphans)})</h2>\n{table}"


def station_page(view: StationView, result: Prediction, hv: HvParams) -> str:
    parts = [
        f'<p><a href="{INDEX}">← all stations</a></p>',
        f"<h1>Station {_e(view.station)}</h1>",
        _station_summary(view),
        f"<h2>Records used ({len(view.records)})</h2>",
        _records_table(view, _several_models(result)) if view.records else "<p>None.</p>",
        f"<h2>Records skipped ({len(view.skipped)})</h2>",
        _skipped_table(view.skipped) if len(view.skipped) else "<p>None.</p>",
        _hv_section(view, hv),
        _windows_section(view),
    ]
    return _page(f"Station {view.station}", "\n".join(parts))


def _station_summary(view: StationView) -> str:
    s = view.summary
    if not int(s["n_records"]):
        return "<p class=big>No prediction: no usable record (the reasons are below).</p>"
    text = (
        f'<p class=big id="prediction">Vs30 <b>{s["vs30_mps"]:.0f} m/s</b>, 16–84% interval '
        f"<b>{s['vs30_p16_mps']:.0f}–{s['vs30_p84_mps']:.0f} m/s</b>, NEHRP class "
        f"<b>{_e(s['nehrp_class'])}</b> (from {int(s['n_records'])} record(s): the median of "
        "their ln predictions).</p>"
    )
    if _finite(s["label_vs30_mps"]):
        text += (
            f'<p id="label">Measured Vs30 {s["label_vs30_mps"]:.0f} m/s: residual '
            f"ln(pred/measured) = <b>{_station_residual(s):+.3f}</b>.</p>"
        )
    return text + f"<p class=muted>NEHRP classes: {_e(NEHRP_TEXT)}.</p>"


RECORD_HEADERS = [
    ("record", "text"), ("file", "text"), ("Vs30 (m/s)", "number"), ("16–84% (m/s)", "number"),
    ("NEHRP", "text"), ("P", "text"), ("S", "text"), ("H/V f0 (Hz)", "number"),
    ("measured (m/s)", "number"), ("ln(pred/measured)", "number"),
]  # fmt: skip


def _several_models(result: Prediction) -> bool:
    """Whether a fallback model answered some records (the tables then say which did)."""
    return result.records["model"].nunique() > 1


def _records_table(view: StationView, show_model: bool) -> str:
    rows = []
    for rec in view.records:
        r = rec.row
        rows.append([
            Cell(str(r["record_id"]), link=f"#{_anchor(rec)}"), _files(r["source_file"]),
            _num(r["vs30_mps"]), _interval(r), Cell(str(r["nehrp_class"])),
            Cell(_text(r["p_status"])), Cell(_text(r["s_status"])),
            _num(rec.hv.peak.f0_hz, "{:.2f}"), _num(r["label_vs30_mps"]),
            _num(residual_ln(_value(r, "vs30_mps"), _value(r, "label_vs30_mps")), "{:+.3f}"),
        ])  # fmt: skip
        if show_model:
            rows[-1].append(Cell(str(r["model"])))
    headers = RECORD_HEADERS + ([("model", "text")] if show_model else [])
    return html_table("records", headers, rows)


def _skipped_table(skipped: pd.DataFrame) -> str:
    rows = [[Cell(_text(r["record_id"])), _files(r["source_file"]),
             Cell(str(r["reason"]), css="reason")] for r in skipped.to_dict("records")]  # fmt: skip
    headers = [("record", "text"), ("file", "text"), ("reason", "text")]
    return html_table("skipped", headers, rows)


def _hv_section(view: StationView, hv: HvParams) -> str:
    if view.hv is None:
        return ""
    caption = (
        f"Earthquake H/V (SESAME processing, Konno–Ohmachi b = {hv.ko_bandwidth:g}, "
        f"{hv.horizontal.replace('_', ' ')} of the horizontals) of the {hv.window_s:g} s "
        f"S window ({hv.pre_s_s:g} s before S; centred on the PGA where there is no S) of "
        f"each record used (grey); mean of ln H/V ± 1 sd over the records (black, band); "
        f"f0 = {view.hv.f0_hz:.2f} Hz (peak of the mean, H/V {view.hv.amplitude:.2f})."
    )
    return (
        f'<h2>H/V</h2>\n<figure><img src="{IMG_DIR}/{_e(view.hv_figure)}" '
        f'alt="H/V of {_e(view.station)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _anchor(rec: RecordView) -> str:
    return "window-" + re.sub(r"[^A-Za-z0-9_-]+", "_", str(rec.figure).removesuffix(".png"))


def _windows_section(view: StationView) -> str:
    if not view.records:
        return ""
    parts = ["<h2>What the model saw</h2>"]
    for rec in view.records:
        parts.append(
            f'<figure id="{_e(_anchor(rec))}"><img src="{IMG_DIR}/{_e(rec.figure)}" '
            f'alt="window of {_e(rec.row["record_id"])}"><figcaption>'
            f"{_e(_window_caption(rec))}</figcaption></figure>"
        )
    return "\n".join(parts)


def _window_caption(rec: RecordView) -> str:
    f, seen = rec.bundle.features, rec.seen
    reads = [f"the {f.window_s:g} s {f.segmentation.replace('_', '-')} window (shaded)"]
    if f.ps_channel:
        reads.append("a P/S channel equal to 1 from P to S (green)")
    if f.sp_scalar:
        reads.append("the S−P time")
    if getattr(f, "gmm_scalars", False):  # a FeatureParams option newer than this module
        reads.append("the magnitude, ln hypocentral distance and ln PGA")
    if f.hv_bins:
        reads.append(f"ln H/V at {f.hv_bins} frequencies of the {f.hv_window_s:g} s from "
                     f"{f.hv_pre_pga_s:g} s before the PGA (hatched)")  # fmt: skip
    arrivals = "; ".join(
        _arrival_text(phase, sample, seen.fs_hz, rec.row.get(f"{phase.lower()}_status"))
        for phase, sample in (("P", seen.p_sample), ("S", seen.s_sample))
    )
    text = f"{rec.row['record_id']} ({rec.row['model']}, {rec.bundle.model_name}) reads "
    text += ", ".join(reads) + f". {arrivals}. Preprocessed record in m/s², "
    text += f"{seen.fs_hz:g} Hz; the window in colour, the rest of the record in grey."
    if not rec.bundle.reads_waveform:
        text += " This model reads only the scalars: the waveform window is not used."
    return text


def _arrival_text(phase: str, sample: float | None, fs_hz: float, status: object) -> str:
    status = str(status or "none")
    if sample is None:
        return f"{phase}: {status}, not given to the model"
    return f"{phase} {status} at {sample / fs_hz:.2f} s"


# --- screenshots ----------------------------------------------------------------------------


def chromium_paths() -> tuple[str, str]:
    """The Chromium browser and its chromedriver: ``$DEEPVS30_CHROMIUM`` and
    ``$DEEPVS30_CHROMEDRIVER`` where set, else from PATH (Debian: chromium, chromium-driver)."""
    import os

    browser = os.environ.get("DEEPVS30_CHROMIUM") or shutil.which("chromium")
    driver = os.environ.get("DEEPVS30_CHROMEDRIVER") or shutil.which("chromedriver")
    return browser or "/usr/bin/chromium", driver or "/usr/bin/chromedriver"


@contextmanager
def headless_chromium(width_px: int = 1280, height_px: int = 900) -> Iterator:
    """A selenium WebDriver on headless Chromium with a throw-away profile, quit on exit.
    It needs the dev extra (selenium) and the Debian packages chromium, chromium-driver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    with tempfile.TemporaryDirectory(prefix="deepvs30-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                     f"--window-size={width_px},{height_px}"):  # fmt: skip
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def screenshot(driver, url: str, path: Path, width_px: int = 1280, max_height_px: int = 2000):
    """A PNG of the page at ``url``, as tall as its content (up to ``max_height_px``)."""
    driver.set_window_size(width_px, 900)
    driver.get(url)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width_px, min(int(height) + 20, max_height_px))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


def screenshots(report_dir: Path, out_dir: Path, station_page_name: str = "") -> list[Path]:
    """``report-index.png`` and ``report-station.png`` (the given station page, else the
    first page with the most records) of a report folder, by headless Chromium."""
    report_dir = report_dir.resolve()
    page = station_page_name or _busiest_page(report_dir)
    shots = [(INDEX, out_dir / "report-index.png"), (page, out_dir / "report-station.png")]
    with headless_chromium() as driver:
        for name, path in shots:
            screenshot(driver, (report_dir / name).as_uri(), path)
    return [path for _, path in shots]


def _busiest_page(report_dir: Path) -> str:
    """The station page with the most figures (records), by name order on ties."""
    pages = sorted(report_dir.glob("station-*.html"))
    if not pages:
        raise FileNotFoundError(f"{report_dir}: no station page")
    figures = [p.read_text(encoding="utf-8").count("<figure") for p in pages]
    return pages[figures.index(max(figures))].name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deepvs30.report", description=__doc__)
    parser.add_argument("--screenshot", metavar="DIR", required=True, help="a report folder")
    parser.add_argument("--out", default="docs/img", help="where the PNGs go (docs/img)")
    parser.add_argument("--station-page", default="", help="station page file name to shoot")
    args = parser.parse_args(argv)
    for path in screenshots(Path(args.screenshot), Path(args.out), args.station_page):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
