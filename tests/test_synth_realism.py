"""The synthetic corpus' realism options (issue 13, the synthetic-to-real gap): each changes
only what it says, and each is off by default."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deepvs30.dataset import CanonicalDataset
from deepvs30.errors import ConfigError
from deepvs30.hvsr import HvParams, hv_curve
from deepvs30.synth import stochastic as st
from deepvs30.synth.generate import Synthesizer, generate
from deepvs30.synth.params import SynthParams

BASE = dataclasses.replace(SynthParams(), n_stations=16, n_events=24, seed=11)
FS_HZ = BASE.sampling_rate_hz


def corpus(tmp_path_factory, name: str, **options) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    out = tmp_path_factory.mktemp(name) / "data"
    generate(dataclasses.replace(BASE, **options), out)
    with CanonicalDataset(out) as ds:
        md = ds.metadata.copy()
        waves = {md["trace_name"].iat[i]: w for i, w in ds.iter_waveforms()}
    return md.set_index("trace_name"), waves


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return corpus(tmp_path_factory, "base")


def test_options_are_off_by_default() -> None:
    p = SynthParams()
    assert p.pre_event_range_s is None
    assert p.p_pick_error_s == p.s_pick_error_s == 0.0
    assert p.site_scatter_sigma_ln == p.site_scatter_record_sigma_ln == 0.0


@pytest.mark.parametrize(
    "bad", [{"pre_event_range_s": (0.0, 5.0)}, {"pre_event_range_s": (6.0, 5.0)},
            {"p_pick_error_s": -0.1}, {"site_scatter_octaves": 0.0}],
)  # fmt: skip
def test_bad_options_are_refused(bad) -> None:
    with pytest.raises(ConfigError, match="synth."):
        dataclasses.replace(SynthParams(), **bad)


def test_pre_event_range_draws_the_noise_before_p_per_record(tmp_path_factory, base) -> None:
    """P lies 1-4 s into the record, varying; start time + P time = origin + R/alpha."""
    md, _ = corpus(tmp_path_factory, "pre", pre_event_range_s=(1.0, 4.0))
    p_s = md["trace_p_arrival_sample"] / FS_HZ
    assert p_s.between(1.0, 4.0).all() and p_s.std() > 0.5
    assert (base[0]["trace_p_arrival_sample"] == 10.0 * FS_HZ).all()
    origin = pd.to_datetime(md["source_origin_time"])
    start = pd.to_datetime(md["trace_start_time"])
    p_time_s = (start - origin).dt.total_seconds() + p_s
    np.testing.assert_allclose(p_time_s, md["path_hyp_distance_km"] / st.ALPHA_KMPS, atol=1e-5)


def test_pick_errors_move_the_written_arrivals_not_the_waveform(tmp_path_factory, base) -> None:
    md0, waves0 = base
    md, waves = corpus(tmp_path_factory, "picks", p_pick_error_s=0.2, s_pick_error_s=0.5)
    assert list(md.index) == list(md0.index)
    for name in md.index:
        np.testing.assert_array_equal(waves[name], waves0[name])
    dp = (md["trace_p_arrival_sample"] - md0["trace_p_arrival_sample"]) / FS_HZ
    ds = (md["trace_s_arrival_sample"] - md0["trace_s_arrival_sample"]) / FS_HZ
    assert 0.12 < dp.std() < 0.3 and 0.3 < ds.std() < 0.75 and abs(dp.mean()) < 0.1
    assert (md["trace_s_arrival_sample"] > md["trace_p_arrival_sample"]).all()
    assert (md["trace_p_status"] == "synthetic_picked").all()
    assert (md0["trace_p_status"] == "synthetic").all()


def _hv_ln(md: pd.DataFrame, waves: dict[str, np.ndarray]) -> pd.DataFrame:
    params = HvParams(window_s=20.0, fmin_hz=0.5, fmax_hz=20.0, n_freqs=24)
    rows = {}
    for name, w in waves.items():
        s_sample = int(md.at[name, "trace_s_arrival_sample"])
        rows[name] = np.log(hv_curve(w, FS_HZ, s_sample - 100, params)[1])
    return pd.DataFrame.from_dict(rows, orient="index")


def test_site_scatter_leaves_the_vertical_and_spreads_hv(tmp_path_factory, base) -> None:
    """Horizontals only: the vertical is the same record; per-record scatter makes a station's
    H/V curves differ more between its records than the 1-D column alone does."""
    md0, waves0 = base
    md, waves = corpus(tmp_path_factory, "scatter", site_scatter_record_sigma_ln=0.8)
    assert list(md.index) == list(md0.index)  # the trigger reads the station's site term only
    same_z = [np.array_equal(waves[n][0], waves0[n][0]) for n in md.index]
    changed_h = [not np.array_equal(waves[n][1:], waves0[n][1:]) for n in md.index]
    assert all(same_z) and all(changed_h)

    def within_station_sd(m, w) -> float:
        hv = _hv_ln(m, w)
        return float(hv.groupby(m.loc[hv.index, "station_code"]).std().mean().mean())

    assert within_station_sd(md, waves) > 1.3 * within_station_sd(md0, waves0)


def test_station_scatter_is_smooth_deterministic_and_of_its_sigma() -> None:
    synth = Synthesizer(dataclasses.replace(BASE, site_scatter_sigma_ln=0.5))
    factors = np.array([synth.site_scatter(np.random.default_rng(k), 0.5) for k in range(200)])
    ln = np.log(factors)
    node_hz = 0.05 * 2.0 ** (np.array([8, 12]) * BASE.site_scatter_octaves)  # 0.8, 3.2 Hz
    sd_at_nodes = ln[:, np.searchsorted(synth.freq_hz, node_hz)].std(axis=0)
    np.testing.assert_allclose(sd_at_nodes, 0.5, rtol=0.2)
    mid_hz = 0.05 * 2.0 ** (10.5 * BASE.site_scatter_octaves)  # half way: sd 0.5/sqrt(2)
    assert ln[:, np.searchsorted(synth.freq_hz, mid_hz)].std() < 0.8 * sd_at_nodes.mean()
    band = synth.freq_hz > 0.5  # the H/V band; below, the grid is coarse in log f
    step = np.abs(np.diff(ln[:, band], axis=1)).max()
    assert step < 0.1  # smooth: no jump between neighbouring frequencies (0.006 Hz apart)
    again = synth.site_scatter(np.random.default_rng(3), 0.5)
    np.testing.assert_array_equal(again, factors[3])


def test_synth_realism_experiment_scores_each_variant_zero_shot(
    tiny_dataset, tmp_path, monkeypatch
) -> None:
    """One corpus per variant (its own cache folder), each scored by the H/V ridge and the
    CNN-LSTM on every station of the 'real' set (here the tiny corpus stands in for it)."""
    from deepvs30 import experiments
    from deepvs30.config import load_params
    from deepvs30.prepare import PrepareParams, prepare

    stand_in = tmp_path / "real_prepared"
    prepare(tiny_dataset, stand_in, PrepareParams())
    monkeypatch.setattr(experiments, "real_corpus", lambda setup: stand_in)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    table = experiments.run_experiment("synth_realism", tmp_path / "exp", quick=True,
                                       params=params)  # fmt: skip
    quick = params["experiments"]["quick"]["realism"]
    assert sorted(table["arm"].unique()) == sorted(quick)
    assert set(table["model"]) == {"hv_ridge", "cnn_lstm"} and len(table) == 2 * len(quick)
    assert (table["test_stations"] == 24).all()  # every station of the stand-in, zero-shot
    assert table[["station_mape_pct", "bias_ln", "spearman_rho"]].notna().all().all()
    corpora = sorted(p.name for p in (tmp_path / "exp" / "work" / "data").iterdir())
    assert len(corpora) == len(quick)  # one cached corpus per variant
    summary = pd.read_csv(tmp_path / "exp" / "synth_realism_quick_summary.csv")
    assert {"bias_ln_mean", "spearman_rho_mean"} <= set(summary.columns)
