"""P/S picking on synthetic records with known arrivals (and, marked realdata, on the AFAD .mat
records whose source gives P and S)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from obspy.signal.filter import bandpass

from deepvs30.ingest import default_realdata_dir
from deepvs30.readers.base import RawRecord
from deepvs30.readers.picking import (
    PickParams,
    aic_onset,
    given_or_picked,
    pick_arrivals,
    sta_lta,
    travel_times,
)

FS_HZ = 100.0
NOISE_MPS2 = 1e-4
TOL_S = 0.2
EVENT = {"event_latitude_deg": 35.0, "event_longitude_deg": 139.0, "event_depth_km": 10.0}


def _burst(rng: np.random.Generator, n: int, t0_s: float, amp: float, decay_s: float) -> np.ndarray:
    """Band-limited (2–10 Hz) noise switched on at t0_s, decaying exponentially."""
    t = np.arange(n) / FS_HZ
    x = bandpass(rng.normal(size=n), 2.0, 10.0, FS_HZ, corners=4)
    envelope = np.where(t >= t0_s, np.exp(-np.clip(t - t0_s, 0, None) / decay_s), 0.0)
    return amp * envelope * x / x.std()


def synthetic(
    p_s: float | None = 2.0,
    s_s: float | None = 6.0,
    duration_s: float = 30.0,
    seed: int = 0,
    p_amp: float = 0.02,
    s_amp: float = 0.2,
    **meta: object,
) -> RawRecord:
    """Noise + a P (strongest on Z) at p_s + an S (strongest on N, E) at s_s, ZNE in m/s²."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * FS_HZ)
    wf = NOISE_MPS2 * rng.normal(size=(3, n))
    for t0, amp, share_z, decay in ((p_s, p_amp, 1.0, 4.0), (s_s, s_amp, 0.3, 6.0)):
        if t0 is not None:
            for c, share in enumerate((share_z, 1.0 - 0.7 * share_z, 1.0 - 0.7 * share_z)):
                wf[c] += _burst(rng, n, t0, amp * share, decay)
    fields = {"start_time": None, "station_network": "XX", "station_code": "SYN"}
    return RawRecord(waveform_mps2=wf, sampling_rate_hz=FS_HZ, **{**fields, **meta})


def _station_at(dist_km: float) -> dict[str, float]:
    """Station coordinates dist_km north of EVENT's epicentre."""
    return {"station_latitude_deg": 35.0 + dist_km / 111.195, "station_longitude_deg": 139.0}


def _taup_sp(dist_km: float, depth_km: float) -> float:
    from obspy.taup import TauPyModel

    arrivals = TauPyModel("iasp91").get_travel_times(
        depth_km, dist_km / 111.195, phase_list=["p", "P", "Pn", "s", "S", "Sn"]
    )
    t_p = min(a.time for a in arrivals if a.name.lower().startswith("p"))
    t_s = min(a.time for a in arrivals if a.name.lower().startswith("s"))
    return t_s - t_p


# ---------------------------------------------------------------- building blocks


def test_aic_onset_finds_a_variance_step() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, 300), rng.normal(0, 10, 200)])
    assert abs(aic_onset(x, 0, len(x)) - 300) <= 3


def test_sta_lta_needs_no_long_pre_event_window() -> None:
    energy = np.r_[np.full(50, 1.0), np.full(200, 100.0)]  # onset 0.5 s after the first sample
    cf = sta_lta(energy, n_sta=20, n_lta=300, i0=0, n_lead=10)
    assert int(np.argmax(cf)) == 50 and cf.max() == pytest.approx(100.0)


@pytest.mark.parametrize(("dist_km", "depth_km"), [(5.0, 8.0), (40.0, 10.0), (150.0, 70.0)])
def test_travel_times_match_taup(dist_km: float, depth_km: float) -> None:
    t_p, t_s = travel_times(dist_km / 111.195, depth_km)
    assert t_s - t_p == pytest.approx(_taup_sp(dist_km, depth_km), rel=0.01, abs=0.05)


def test_pick_params_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PickParams().p_ratio = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------- picked from the waveform


def test_p_and_s_picked_without_event_location() -> None:
    picks = pick_arrivals(synthetic())
    assert (picks.p_status, picks.s_status) == ("picked", "picked")
    assert picks.p_arrival_s == pytest.approx(2.0, abs=TOL_S)
    assert picks.s_arrival_s == pytest.approx(6.0, abs=TOL_S)
    assert picks.sp_travel_time_s is None


@pytest.mark.parametrize("p_s", [1.0, 1.5, 3.0])
def test_record_starting_seconds_before_p(p_s: float) -> None:
    picks = pick_arrivals(synthetic(p_s=p_s, s_s=p_s + 4.0))
    assert picks.p_status == "picked"
    assert picks.p_arrival_s == pytest.approx(p_s, abs=TOL_S)
    assert picks.s_arrival_s == pytest.approx(p_s + 4.0, abs=TOL_S)


def test_weak_p_before_strong_s() -> None:
    picks = pick_arrivals(synthetic(p_amp=0.002, s_amp=0.5, seed=3))
    assert picks.p_arrival_s == pytest.approx(2.0, abs=TOL_S)
    assert picks.s_arrival_s == pytest.approx(6.0, abs=TOL_S)


def test_dead_head_is_no_onset() -> None:
    record = synthetic(p_s=5.0, s_s=9.0)
    record.waveform_mps2[:, :200] = 0.0  # 2 s of zero padding before the noise starts
    picks = pick_arrivals(record)
    assert picks.p_arrival_s == pytest.approx(5.0, abs=TOL_S)


def test_flat_record_fails_with_reason() -> None:
    record = synthetic(p_s=None, s_s=None)
    record.waveform_mps2[:] = 0.0
    picks = pick_arrivals(record)
    assert (picks.p_status, picks.s_status) == ("failed", "failed")
    assert (picks.p_arrival_s, picks.s_arrival_s) == (None, None)
    assert "no P onset" in picks.note


def test_noise_only_fails_with_reason() -> None:
    picks = pick_arrivals(synthetic(p_s=None, s_s=None, seed=5))
    assert picks.p_status == "failed" and "no P onset" in picks.note


def test_short_record_fails_with_reason() -> None:
    picks = pick_arrivals(synthetic(p_s=1.0, s_s=3.0, duration_s=5.0))
    assert picks.p_status == picks.s_status == "failed"
    assert "too short" in picks.note


# ---------------------------------------------------------------- travel times


@pytest.mark.parametrize("dist_km", [20.0, 60.0])
def test_s_minus_p_from_event_location(dist_km: float) -> None:
    sp_s = _taup_sp(dist_km, 10.0)
    record = synthetic(p_s=3.0, s_s=3.0 + sp_s, duration_s=40.0, **EVENT, **_station_at(dist_km))
    picks = pick_arrivals(record)
    assert picks.sp_travel_time_s == pytest.approx(sp_s, rel=0.05)
    assert (picks.p_status, picks.s_status) == ("picked", "picked")
    assert picks.s_arrival_s == pytest.approx(3.0 + sp_s, abs=TOL_S)


def test_s_predicted_where_no_s_onset() -> None:
    record = synthetic(p_s=3.0, s_s=None, duration_s=40.0, **EVENT, **_station_at(40.0))
    picks = pick_arrivals(record)
    assert picks.p_status == "picked" and picks.s_status == "predicted"
    assert picks.s_arrival_s - picks.p_arrival_s == pytest.approx(_taup_sp(40.0, 10.0), rel=0.05)
    assert "S−P" in picks.note


def test_s_onset_inconsistent_with_travel_time_is_replaced() -> None:
    sp_s = _taup_sp(80.0, 10.0)  # about 9.6 s; the synthetic S comes 4 s after P
    record = synthetic(p_s=3.0, s_s=7.0, duration_s=40.0, **EVENT, **_station_at(80.0))
    picks = pick_arrivals(record)
    assert picks.s_status == "predicted"
    assert picks.s_arrival_s == pytest.approx(picks.p_arrival_s + sp_s, abs=0.05)


def test_record_starting_after_p() -> None:
    """Only an S-like onset at 3 s while S−P is ~9.6 s: P came before the first sample."""
    record = synthetic(p_s=None, s_s=3.0, duration_s=40.0, **EVENT, **_station_at(80.0))
    picks = pick_arrivals(record)
    assert picks.p_status == "failed" and picks.p_arrival_s is None
    assert "record starts after P" in picks.note
    assert picks.s_status == "picked"
    assert picks.s_arrival_s == pytest.approx(3.0, abs=TOL_S)


def test_origin_time_checks_the_pick() -> None:
    """Origin time + travel time: the onset near it is picked; with none, P is predicted."""
    t_p, t_s = travel_times(40.0 / 111.195, 10.0)
    clocks = {"event_origin_time": "2020-01-01T00:00:01.500000",
              "start_time": "2020-01-01T00:00:03.000000"}  # fmt: skip
    meta = {**EVENT, **_station_at(40.0), **clocks}
    picked = pick_arrivals(synthetic(p_s=t_p - 1.5, s_s=t_s - 1.5, duration_s=40.0, **meta))
    assert picked.p_status == "picked"
    assert picked.p_arrival_s == pytest.approx(t_p - 1.5, abs=TOL_S)
    predicted = pick_arrivals(synthetic(p_s=None, s_s=None, duration_s=40.0, **meta))
    assert predicted.p_status == "predicted"
    assert predicted.p_arrival_s == pytest.approx(t_p - 1.5, abs=0.05)
    assert predicted.s_arrival_s == pytest.approx(t_s - 1.5, abs=0.05)


def test_origin_time_on_a_whole_minute_is_not_trusted() -> None:
    """K-NET headers give the origin to the minute: no absolute prediction from it."""
    meta = {**EVENT, **_station_at(40.0), "event_origin_time": "2020-01-01T00:00:00",
            "start_time": "2020-01-01T00:00:03"}  # fmt: skip
    picks = pick_arrivals(synthetic(p_s=None, s_s=None, duration_s=40.0, **meta))
    assert picks.p_status == "failed"


# ---------------------------------------------------------------- given arrivals


def test_given_arrivals_are_kept() -> None:
    picks = given_or_picked(synthetic(p_arrival_s=2.1, s_arrival_s=6.1))
    assert (picks.p_arrival_s, picks.s_arrival_s, picks.p_status, picks.s_status) == (
        2.1, 6.1, "given", "given")  # fmt: skip


def test_given_p_only_picks_s() -> None:
    picks = given_or_picked(synthetic(p_arrival_s=2.0))
    assert (picks.p_status, picks.s_status) == ("given", "picked")
    assert picks.s_arrival_s == pytest.approx(6.0, abs=TOL_S)


def test_p_after_a_given_s_is_refused() -> None:
    picks = given_or_picked(synthetic(s_arrival_s=1.0))  # the waveform's P is at 2 s
    assert picks.p_status == "failed" and picks.s_status == "given"
    assert picks.p_arrival_s is None and "before the given S" in picks.note


def test_every_pick_is_sane() -> None:
    for seed in range(8):
        picks = pick_arrivals(synthetic(seed=seed, **EVENT, **_station_at(10.0 + 10 * seed)))
        duration_s = 30.0
        if picks.p_arrival_s is not None:
            assert 0 < picks.p_arrival_s < duration_s
        if picks.s_arrival_s is not None:
            assert (picks.p_arrival_s or 0.0) < picks.s_arrival_s < duration_s


# ---------------------------------------------------------------- real records


REALDATA = default_realdata_dir()


@pytest.mark.realdata
@pytest.mark.skipif(not (REALDATA / "INDEX.csv").is_file(), reason="no ../shared/realdata")
def test_afad_mat_given_picks_reproduced() -> None:
    """The AFAD .mat files give P and S: the picker (ignoring them) reproduces at least 4 of 6
    within 0.5 s and its median error stays under 0.3 s (4801's given P and 4806's P at 0.08 s
    disagree with the waveform and with S−P at their hypocentral distance)."""
    from deepvs30.readers import read_record

    errors_p, errors_s = [], []
    for path in sorted((REALDATA / "afad_cnnlstm_deepeq").glob("*.mat")):
        (record,) = read_record(path)
        picks = pick_arrivals(record)
        assert picks.p_status == "picked" and picks.s_status == "picked", (path.name, picks)
        errors_p.append(abs(picks.p_arrival_s - record.p_arrival_s))
        errors_s.append(abs(picks.s_arrival_s - record.s_arrival_s))
    assert len(errors_p) == 6
    assert sum(e < 0.5 for e in errors_p) >= 4 and sum(e < 0.5 for e in errors_s) >= 4
    assert float(np.median(errors_p)) < 0.3 and float(np.median(errors_s)) < 0.3
    assert all(math.isfinite(e) for e in errors_p + errors_s)


def test_travel_time_curves_are_cached_on_disk(tmp_path, monkeypatch) -> None:
    """The first use of a source depth builds TauP curves and keeps them; a later process reads
    the same times from the cache without importing TauP (and matplotlib with it)."""
    import subprocess
    import sys

    monkeypatch.setenv("DEEPVS30_CACHE", str(tmp_path))
    code = (
        "import sys\n"
        "from deepvs30.readers.picking import travel_times\n"
        "print(*travel_times(0.5, 13.0), 'obspy.taup' in sys.modules)\n"
    )

    def run() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
        )
        return done.stdout.split()

    built = run()
    assert built[2] == "True" and len(list((tmp_path / "taup").glob("iasp91-13km-*.npz"))) == 1
    cached = run()
    assert cached == [built[0], built[1], "False"]
    sp_s = float(built[1]) - float(built[0])
    assert sp_s == pytest.approx(_taup_sp(0.5 * 111.195, 13.0), abs=0.1)
