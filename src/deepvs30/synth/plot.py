"""A look at the corpus: sample records (Z, N, E), their Fourier spectra and H/V with f0."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from deepvs30.dataset import CanonicalDataset  # noqa: E402
from deepvs30.hvsr import HvParams, hv_curve, smoothed_spectra  # noqa: E402

PLOT_HV = HvParams(window_s=20.0, fmin_hz=0.1, fmax_hz=40.0, n_freqs=200)

G_MPS2 = 9.80665


def pick_samples(metadata, n: int = 4) -> list[int]:
    """One well-recorded row per Vs30 quantile band (soft to stiff), largest PGA proxy:
    the largest magnitude over distance among that band's records."""
    vs30 = metadata["station_vs30_mps"].to_numpy()
    score = metadata["source_magnitude"] - 2.0 * np.log10(metadata["path_hyp_distance_km"])
    edges = np.quantile(vs30, np.linspace(0, 1, n + 1))
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        band = np.flatnonzero((vs30 >= lo) & (vs30 <= hi))
        rows.append(int(band[np.argmax(score.to_numpy()[band])]))
    return rows


def plot_samples(dataset_dir: Path, out_png: Path, n: int = 4) -> Path:
    with CanonicalDataset(dataset_dir) as ds:
        rows = pick_samples(ds.metadata, n)
        fig, axes = plt.subplots(
            len(rows), 3, figsize=(16, 3.2 * len(rows)), gridspec_kw={"width_ratios": [2.2, 1, 1]}
        )
        axes = np.atleast_2d(axes)
        for ax_row, i in zip(axes, rows, strict=True):
            _plot_record(ax_row, ds.metadata.iloc[i], ds.waveform(i))
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def _plot_record(ax_row, meta, wave: np.ndarray) -> None:
    fs_hz = float(meta["trace_sampling_rate_hz"])
    t_s = np.arange(wave.shape[1]) / fs_hz
    p_s = meta["trace_p_arrival_sample"] / fs_hz
    s_s = meta["trace_s_arrival_sample"] / fs_hz
    ax = ax_row[0]
    offset = 2.2 * np.abs(wave).max() / G_MPS2
    for k, comp in enumerate("ZNE"):
        ax.plot(t_s, wave[k] / G_MPS2 - k * offset, lw=0.5, label=comp)
    ax.axvline(p_s, color="b", ls="--", lw=0.8)
    ax.axvline(s_s, color="r", ls="--", lw=0.8)
    ax.set_title(
        f"{meta['station_code']} Vs30={meta['station_vs30_mps']:.0f} m/s  "
        f"M{meta['source_magnitude']:.1f}  R={meta['path_hyp_distance_km']:.0f} km  "
        f"PGA={np.abs(wave[1:]).max() / G_MPS2:.3f} g",
        fontsize=9,
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("acc (g), offset Z/N/E")
    ax.legend(fontsize=7, loc="upper right")
    s_sample = int(meta["trace_s_arrival_sample"])
    freq_hz, spec = smoothed_spectra(wave, fs_hz, s_sample - int(fs_hz), PLOT_HV)
    for k, comp in enumerate("ZNE"):
        ax_row[1].loglog(freq_hz, spec[k], lw=0.8, label=comp)
    ax_row[1].set_xlabel("frequency (Hz)")
    ax_row[1].set_ylabel("Fourier amp. (m/s), S window")
    ax_row[1].legend(fontsize=7)
    _, hv = hv_curve(wave, fs_hz, s_sample - int(fs_hz), PLOT_HV)  # from 1 s before S
    ax_row[2].semilogx(freq_hz, hv, "k", lw=1)
    ax_row[2].axvline(
        meta["station_f0_hz"], color="r", ls="--", label=f"f0 = {meta['station_f0_hz']:.2f} Hz"
    )
    ax_row[2].set_xlabel("frequency (Hz)")
    ax_row[2].set_ylabel("H/V")
    ax_row[2].legend(fontsize=7)
