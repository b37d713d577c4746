"""Physics of the synthetic generator's building blocks (no corpus needed)."""

from __future__ import annotations

import numpy as np
import pystrata
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from deepvs30.synth import site_response as sr
from deepvs30.synth import stochastic as st
from deepvs30.synth.generate import (
    CATALOGUE_START,
    Event,
    Synthesizer,
    make_clusters,
    make_station,
)
from deepvs30.synth.params import SynthParams
from deepvs30.synth.profiles import SiteProfile, random_profile, vs30_mps


def _uniform_layer(h_m=30.0, vs1=200.0, vs2=1000.0, rho1=1800.0, rho2=2300.0, xi=0.03):
    return SiteProfile(
        thickness_m=np.array([h_m, np.inf]),
        vs_mps=np.array([vs1, vs2]),
        vp_mps=np.array([2.0 * vs1, np.sqrt(3) * vs2]),
        density_kgm3=np.array([rho1, rho2]),
        damping_ratio=np.array([xi, 0.0]),
    )


def test_vs30_is_travel_time_average():
    h = np.array([5.0, 10.0, 20.0, np.inf])
    vs = np.array([150.0, 250.0, 400.0, 900.0])
    expected = 30.0 / (5 / 150 + 10 / 250 + 15 / 400)
    assert vs30_mps(h, vs) == pytest.approx(expected, rel=1e-12)
    # shallow bedrock: the half-space fills the rest of the 30 m
    assert vs30_mps(np.array([10.0, np.inf]), np.array([200.0, 1000.0])) == pytest.approx(
        30.0 / (10 / 200 + 20 / 1000)
    )


@settings(max_examples=30, deadline=None)
@given(
    vs0=hs.floats(100, 700),
    depth=hs.floats(1, 300),
    vs_rock=hs.floats(760, 2500),
    n=hs.floats(0.1, 0.5),
    seed=hs.integers(0, 2**32 - 1),
)
def test_random_profile_is_physical(vs0, depth, vs_rock, n, seed):
    prof = random_profile(np.random.default_rng(seed), vs0, depth, vs_rock, n)
    assert np.isinf(prof.thickness_m[-1]) and prof.vs_mps[-1] >= 760.0
    assert prof.vs_mps.min() <= prof.vs30_mps <= prof.vs_mps.max()
    assert np.all(prof.vp_mps > prof.vs_mps)
    assert np.all((prof.damping_ratio[:-1] >= 0.01) & (prof.damping_ratio[:-1] <= 0.05))
    assert np.all((prof.density_kgm3 >= 1700) & (prof.density_kgm3 <= 2600))


def test_uniform_layer_resonance_frequency_and_amplitude():
    prof = _uniform_layer()
    f = np.linspace(0.05, 5.0, 20000)
    amp = np.abs(sr.sh_transfer_function(f, prof))
    impedance = 1800 * 200 / (2300 * 1000)
    assert f[np.argmax(amp)] == pytest.approx(200 / (4 * 30), rel=0.02)
    assert amp.max() == pytest.approx(1 / (impedance + np.pi / 2 * 0.03), rel=0.03)
    assert sr.fundamental_frequency_hz(prof) == pytest.approx(200 / 120, rel=0.02)


def test_transfer_function_is_causal():
    fs, n = 100.0, 8192
    tf = sr.sh_transfer_function(np.fft.rfftfreq(n, 1 / fs), _uniform_layer())
    impulse = np.fft.irfft(tf, n)
    assert np.sum(impulse[n // 2 :] ** 2) < 1e-4 * np.sum(impulse**2)
    assert np.argmax(np.abs(impulse)) / fs == pytest.approx(30 / 200, abs=0.02)  # travel time


@pytest.fixture
def seed_modulus():
    old = pystrata.site.COMP_MODULUS_MODEL
    pystrata.site.COMP_MODULUS_MODEL = "seed"  # G* = G (1 + 2 i xi), as PHYSICS.md
    yield
    pystrata.site.COMP_MODULUS_MODEL = old


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_propagator_matches_pystrata(seed, seed_modulus):
    prof = random_profile(np.random.default_rng(seed), 180.0, 45.0, 1200.0, 0.3)
    layers = [
        pystrata.site.Layer(
            pystrata.site.SoilType(
                f"l{i}",
                prof.density_kgm3[i] / 1000 * pystrata.motion.GRAVITY,
                None,
                prof.damping_ratio[i],
            ),
            float(prof.thickness_m[i]) if np.isfinite(prof.thickness_m[i]) else 0.0,
            float(prof.vs_mps[i]),
        )
        for i in range(prof.n_layers)
    ]
    profile = pystrata.site.Profile(layers)
    f = np.geomspace(0.1, 40.0, 400)
    calc = pystrata.propagation.LinearElasticCalculator()
    calc(pystrata.motion.Motion(freqs=f), profile, profile.location("outcrop", index=-1))
    tf_ref = calc.calc_accel_tf(
        profile.location("outcrop", index=-1), profile.location("outcrop", index=0)
    )
    tf = sr.sh_transfer_function(f, prof)
    np.testing.assert_allclose(tf, tf_ref, rtol=1e-8)


def test_vertical_p_response_resonates_higher_and_weaker_at_f0():
    prof = _uniform_layer()
    f0 = sr.fundamental_frequency_hz(prof)
    at_f0 = np.array([f0])
    assert np.abs(sr.sh_transfer_function(at_f0, prof))[0] > 3.0
    assert np.abs(sr.p_transfer_function(at_f0, prof))[0] < 1.5


def test_source_scaling_and_corner_frequency():
    # fc of an M5, 80 bar event ≈ 1 Hz; M0 grows 10^1.5 per magnitude unit
    assert st.corner_frequency_hz(5.0, 80.0) == pytest.approx(1.04, rel=0.03)
    assert st.seismic_moment_dyne_cm(6.0) / st.seismic_moment_dyne_cm(5.0) == pytest.approx(10**1.5)
    assert st.geometric_spreading(100.0) == pytest.approx(1 / 70)
    assert st.geometric_spreading(520.0) == pytest.approx(1 / 70 * 0.5)
    assert st.kappa0_van_houtte_s(760.0) == pytest.approx(0.0286, rel=0.02)
    w = st.saragoni_hart_window(np.array([0.2, 1.0]), 1.0)
    np.testing.assert_allclose(w, [1.0, 0.05], rtol=1e-9)


def test_pga_m5_at_20km_on_rock():
    """PHYSICS.md: PGA of an Mw 5 at 20 km on rock is of order 0.05-0.1 g (0.02-0.2 g here)."""
    p = SynthParams()
    clusters = make_clusters(p)
    synth = Synthesizer(p)
    rock = [
        s
        for s in (make_station(p, clusters[i % 5], i) for i in range(60))
        if 700 <= s.vs30_mps <= 900
    ]
    assert rock
    pga_g = []
    for k in range(10):
        event = Event(k, f"E{k}", CATALOGUE_START, 38.0, 35.0, 10.0, 5.0, 80.0)
        for sta in rock[:4]:
            acc, _, _ = synth.record(event, sta, 20.0)
            pga_g.append(np.abs(acc[1:]).max() / 9.81)
    median_g = float(np.median(pga_g))
    assert 0.02 <= median_g <= 0.2, median_g
