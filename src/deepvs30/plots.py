"""Figures people would rather look at than tables (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from deepvs30.metrics import NEHRP_BOUNDS_MPS, NEHRP_CLASSES  # noqa: E402

CLASS_EDGES_MPS = [b for _, b in NEHRP_BOUNDS_MPS if b > 0]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pred_vs_true(stations: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 6))
    lo = 0.8 * min(stations["vs30_mps"].min(), stations["pred_mps"].min())
    hi = 1.25 * max(stations["vs30_mps"].max(), stations["pred_mps"].max())
    for edge in CLASS_EDGES_MPS:
        if lo < edge < hi:
            ax.axvline(edge, color="0.85", lw=0.8)
            ax.axhline(edge, color="0.85", lw=0.8)
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="1:1")
    ax.plot([lo, hi], [lo * 1.5, hi * 1.5], "k:", lw=0.6)
    ax.plot([lo, hi], [lo / 1.5, hi / 1.5], "k:", lw=0.6, label="±50%")
    if "hv_baseline_mps" in stations:
        ax.scatter(
            stations["vs30_mps"],
            stations["hv_baseline_mps"],
            s=14,
            c="tab:orange",
            alpha=0.6,
            label="H/V baseline",
        )
    yerr = None
    if "sigma_ln" in stations:
        p = stations["pred_mps"]
        yerr = [p - p * np.exp(-stations["sigma_ln"]), p * np.exp(stations["sigma_ln"]) - p]
    ax.errorbar(
        stations["vs30_mps"],
        stations["pred_mps"],
        yerr=yerr,
        fmt="o",
        ms=4,
        color="tab:blue",
        ecolor="tab:blue",
        elinewidth=0.5,
        alpha=0.8,
        label="model (16–84%)",
    )
    if "median_baseline_mps" in stations:
        ax.axhline(
            stations["median_baseline_mps"].iat[0],
            color="tab:green",
            ls="--",
            label="training median",
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlim=(lo, hi),
        ylim=(lo, hi),
        xlabel="measured Vs30 (m/s)",
        ylabel="predicted Vs30 (m/s)",
        title="Station Vs30, test split (lines: NEHRP class bounds)",
    )
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def residuals_by_class(stations: pd.DataFrame, path: Path) -> Path:
    resid = np.log(stations["pred_mps"]) - np.log(stations["vs30_mps"])
    classes = [c for c in NEHRP_CLASSES if (stations["true_class"] == c).any()]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.boxplot([resid[stations["true_class"] == c] for c in classes], tick_labels=classes)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(
        xlabel="NEHRP class (measured Vs30)",
        ylabel="ln(pred/true)",
        title="Station residuals by site class",
    )
    return _save(fig, path)


def residual_trends(records: pd.DataFrame, path: Path) -> Path:
    resid = records["ln_pred"] - np.log(records["vs30_mps"])
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharey=True)
    for ax, (col, label, log) in zip(
        axes,
        [
            ("vs30_mps", "measured Vs30 (m/s)", True),
            ("magnitude", "magnitude", False),
            ("hyp_distance_km", "hypocentral distance (km)", True),
        ],
        strict=True,
    ):
        ax.scatter(records[col], resid, s=5, alpha=0.4)
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel=label, xscale="log" if log else "linear")
    axes[0].set_ylabel("ln(pred/true), per record")
    fig.suptitle("Residuals vs Vs30, magnitude and distance (trends flag shortcut learning)")
    return _save(fig, path)


def learning_curve(history: pd.DataFrame, path: Path) -> Path:
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(history["epoch"], history["train_loss"], label="train loss")
    ax1.plot(history["epoch"], history["val_loss"], label="validation loss")
    ax1.set(xlabel="epoch", ylabel="loss")
    ax2 = ax1.twinx()
    ax2.plot(history["epoch"], history["val_station_mape"], "g--", label="val station MAPE")
    ax2.set_ylabel("validation station MAPE (%)")
    lines = ax1.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax1.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8)
    ax1.set_title("Learning curve")
    return _save(fig, path)


def confusion_plot(table: pd.DataFrame, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(table.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(table.columns)), table.columns)
    ax.set_yticks(range(len(table.index)), table.index)
    for (i, j), v in np.ndenumerate(table.to_numpy()):
        ax.text(j, i, int(v), ha="center", va="center", fontsize=9)
    ax.set(xlabel="predicted class", ylabel="measured class", title="NEHRP classes (stations)")
    return _save(fig, path)


def evaluation_plots(tables: dict, history_csv: Path, out_dir: Path) -> list[Path]:
    stations = tables["station_predictions"]
    paths = [
        pred_vs_true(stations, out_dir / "pred_vs_true.png"),
        residuals_by_class(stations, out_dir / "residuals_by_class.png"),
        residual_trends(tables["record_predictions"], out_dir / "residual_trends.png"),
        confusion_plot(tables["confusion"], out_dir / "confusion.png"),
    ]
    if Path(history_csv).is_file():
        paths.append(learning_curve(pd.read_csv(history_csv), out_dir / "learning_curve.png"))
    stations[["station", "vs30_mps", "pred_mps"]].to_csv(
        out_dir / "station_predictions.csv", index=False
    )
    paths.append(out_dir / "station_predictions.csv")
    return paths


def real_benchmark(oof: pd.DataFrame, summary: pd.DataFrame, best: str, out_dir: Path) -> list:
    """Real benchmark figures: out-of-fold predicted vs measured Vs30 of the best arm beside
    the baselines (seed 0), residuals by NEHRP class, and station MAPE of every arm (mean and
    sd over seeds) on the station-disjoint folds."""
    from deepvs30.metrics import nehrp_class

    seed0 = oof[oof["seed"] == 0]
    best_rows = seed0[seed0["arm"] == best].set_index("station")
    stations = best_rows[["vs30_mps"]].assign(pred_mps=np.exp(best_rows["ln_pred"]))
    if "sigma_ln" in best_rows and best_rows["sigma_ln"].notna().all():
        stations["sigma_ln"] = best_rows["sigma_ln"]
    for arm, column in (("hv_f0", "hv_baseline_mps"), ("median", "median_baseline_mps")):
        rows = seed0[seed0["arm"] == arm].set_index("station")
        if len(rows):
            stations[column] = np.exp(rows["ln_pred"]).reindex(stations.index)
    stations = stations.reset_index()
    if "median_baseline_mps" in stations:  # per-fold medians: show their median as one line
        stations["median_baseline_mps"] = stations["median_baseline_mps"].median()
    paths = [pred_vs_true(stations, out_dir / "real_pred_vs_true.png")]
    stations["true_class"] = nehrp_class(stations["vs30_mps"])
    paths.append(residuals_by_class(stations, out_dir / "real_residuals_by_class.png"))
    kfold = summary[summary["scheme"] == "station_kfold"].sort_values("mape_pct_mean")
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(kfold) + 1.5))
    ax.barh(
        kfold["arm"],
        kfold["mape_pct_mean"],
        xerr=kfold["mape_pct_sd"].fillna(0),
        color=["tab:green" if a in ("median", "hv_f0") else "tab:blue" for a in kfold["arm"]],
    )
    ax.invert_yaxis()
    ax.set(xlabel="station MAPE % (out of fold, mean ± sd over seeds)",
           title="Real records, station-disjoint folds (green: baselines)")  # fmt: skip
    paths.append(_save(fig, out_dir / "real_arms.png"))
    return paths


def experiment_summary(name: str, summary: pd.DataFrame, path: Path) -> Path:
    """Station test MAPE per arm (mean over seeds, error bars one standard deviation)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    mean, sd = summary["station_mape_pct_mean"], summary["station_mape_pct_sd"].fillna(0.0)
    if name == "transfer_curve":
        curve = summary[summary["fraction"] > 0]
        for method, group in curve.groupby("method"):
            ax.errorbar(100 * group["fraction"], group["station_mape_pct_mean"],
                        yerr=group["station_mape_pct_sd"].fillna(0.0), fmt="o-", capsize=3,
                        label=method)  # fmt: skip
        zero = summary[summary["fraction"] == 0]
        if len(zero):
            ax.axhline(zero["station_mape_pct_mean"].iloc[0], ls=":", c="gray", label="zero-shot")
        full = curve[curve["fraction"] == curve["fraction"].max()]
        ax.axhline(full["median_baseline_mape_pct"].iloc[0], ls="--", c="k",
                   label="training median (100%)")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("labelled target training stations (%)")
    else:
        ax.bar(summary["arm"], mean, yerr=sd, capsize=3, color="tab:blue")
        for i, (m, r) in enumerate(zip(mean, summary["station_pearson_r_ln_mean"], strict=True)):
            ax.text(i, m, f"r={r:.2f}", ha="center", va="bottom", fontsize=8)
        ax.tick_params(axis="x", rotation=30)
    seeds = int(summary["seeds"].max())
    ax.set_ylabel(f"station test MAPE (%), mean of {seeds} seed(s)")
    ax.set_title(name.replace("_", " "))
    ax.legend(fontsize=8) if ax.get_legend_handles_labels()[0] else None
    return _save(fig, path)
