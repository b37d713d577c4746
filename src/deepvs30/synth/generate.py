"""Assemble the synthetic corpus: clusters → stations (profiles) → events → records → dataset.

Every random draw comes from a generator seeded by (seed, stream, index...) so a station,
an event or a record is the same whatever else is generated or in which order. Records are
decided first (a cheap random-vibration trigger estimate), then synthesised one by one and
streamed into :func:`deepvs30.dataset.write_dataset`; memory holds one record at a time.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from deepvs30.dataset import write_dataset
from deepvs30.errors import ConfigError
from deepvs30.synth import site_response as sr
from deepvs30.synth import stochastic as st
from deepvs30.synth.params import SynthParams
from deepvs30.synth.profiles import VS_BEDROCK_MIN_MPS, SiteProfile, profile_rows, random_profile

log = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0
STREAM_CLUSTERS, STREAM_STATIONS, STREAM_EVENTS, STREAM_RECORDS = 0, 1, 2, 3
# the realism options draw from streams of their own: off, they leave every other draw as is
STREAM_PRE_EVENT, STREAM_PICK_ERROR, STREAM_SITE_SCATTER = 4, 5, 6
VERTICAL_S_RATIO = 0.5  # S-window energy on the vertical (SV, conversions), relative to one
# horizontal; it passes the P-wave site response, the assumption behind earthquake H/V
HORIZONTAL_P_RATIO = 0.3  # radial P on each horizontal, relative to the vertical P
KAPPA_RANGE_S = (0.005, 0.06)
CLUSTER_EVENT_SIGMA_KM = 80.0
CATALOGUE_START = datetime(2020, 1, 1, tzinfo=UTC)
CATALOGUE_SPAN_S = 3 * 365.25 * 86400.0
WRAP_MARGIN_S = 20.0  # FFT buffer beyond the record end, so spectral shaping does not wrap
# Byte-stable output across CPUs. exp/log/sin/power differ in their last bit between glibc's
# FMA and non-FMA code (measured) and numpy's AVX-512 paths (its own exp/log, SVML), and so do
# numpy's complex products (see complex_product). Every drawn or derived value is therefore
# rounded where it is made, to a stated resolution far coarser than 1 ulp and far finer than
# it matters, and used rounded; the tables hold exactly what the waveforms were made with.
# A 1-ulp difference then changes a written value only if it straddles a rounding boundary:
# probability ~ ulp / resolution, below 1e-9 per value here.
STATION_COORD_DECIMALS = 5  # deg: ~1 m
EVENT_COORD_DECIMALS = 4  # deg: ~10 m, far below catalogue location errors
DEPTH_DECIMALS = 2  # km
MAGNITUDE_DECIMALS = 2  # Mw, as catalogues give it
ORIGIN_TIME_DECIMALS = 2  # s
START_TIME_DECIMALS = 6  # s: the ISO timestamp's microsecond (P stays on its sample)
NOISE_RMS_DECIMALS = 8  # m/s²: 1e-8, 1/20000 of the lowest noise floor (params: 2e-4)
KAPPA_DECIMALS = 5  # s: 0.01 ms (kappa0 is 5-60 ms; stations.csv states it to 1e-5 s)
STRESS_DROP_DECIMALS = 2  # bar: 0.01 (Δσ 10-400 bar)
DISTANCE_DECIMALS = 3  # km: 1 m, the hypocentral distance the record is made at
F0_DECIMALS = 4  # Hz
VS30_DECIMALS = 2  # m/s
# Waveforms are rounded to a grid of 2^k m/s², the largest power of two at most noise_rms/256
# of their station: rounding noise (step/√12 ≤ noise_rms/887) adds < 2e-6 to the noise
# variance, and an absolute step, unlike float32's relative one, does not flip the near-zero
# samples whose relative error is large (measured: 1 float32 ulp of 1.4 M samples differed).
WAVEFORM_STEP_BELOW_NOISE_BITS = 8
SITE_SCATTER_DECIMALS = 5  # the random site factor, relative (1e-5 of an amplitude ~0.3-3)
SITE_SCATTER_FMIN_HZ = 0.05  # lowest node of the random ln amplitude (flat below)


@dataclass(frozen=True)
class Cluster:
    index: int
    lat_deg: float
    lon_deg: float
    vs0_median_mps: float
    soil_depth_median_m: float
    vs_rock_median_mps: float


@dataclass(frozen=True)
class Station:
    index: int
    code: str
    cluster: int
    lat_deg: float
    lon_deg: float
    profile: SiteProfile
    vs30_mps: float
    f0_hz: float
    kappa_rock_s: float
    noise_rms_mps2: float

    @property
    def kappa0_s(self) -> float:
        """Total surface κ0: bedrock part + hysteretic damping of the soil column."""
        return self.kappa_rock_s + soil_kappa_s(self.profile)


@dataclass(frozen=True)
class Event:
    index: int
    source_id: str
    origin_time: datetime
    lat_deg: float
    lon_deg: float
    depth_km: float
    mw: float
    stress_drop_bar: float

    @property
    def fc_hz(self) -> float:
        return st.corner_frequency_hz(self.mw, self.stress_drop_bar)


@dataclass(frozen=True)
class SynthSummary:
    out_dir: Path
    n_records: int
    n_stations: int
    n_events: int
    elapsed_s: float

    @property
    def records_per_s(self) -> float:
        return self.n_records / max(self.elapsed_s, 1e-9)


def _rng(seed: int, stream: int, *index: int) -> np.random.Generator:
    """Independent generator per (stream, index): results do not depend on iteration order."""
    return np.random.default_rng([seed, stream, *index])


def distance_km(lat1: float, lon1: float, lat2: np.ndarray, lon2: np.ndarray) -> np.ndarray:
    """Great-circle (haversine) distance."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi, dlmb = p2 - p1, np.radians(np.asarray(lon2) - lon1)
    h = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def _offset_deg(lat_deg: float, north_km: float, east_km: float) -> tuple[float, float]:
    dlat = np.degrees(north_km / EARTH_RADIUS_KM)
    dlon = np.degrees(east_km / (EARTH_RADIUS_KM * np.cos(np.radians(lat_deg))))
    return float(dlat), float(dlon)


def _clip_to_region(p: SynthParams, lat: float, lon: float) -> tuple[float, float]:
    return float(np.clip(lat, *p.lat_range_deg)), float(np.clip(lon, *p.lon_range_deg))


def make_clusters(p: SynthParams) -> list[Cluster]:
    """Cluster centres spread over the region; each has its own median site condition,
    from soft basin to rock (regions differ in their Vs30 distribution). Soft basins sit on
    softer bedrock (stiff sediments) than rock regions: deep and shallow structure go
    together, as in real regions, and this is part of why Vs30 predicts amplification."""
    rng = _rng(p.seed, STREAM_CLUSTERS)
    stiffness = (np.arange(p.n_clusters) + rng.uniform(0.3, 0.7, p.n_clusters)) / p.n_clusters
    stiffness = rng.permutation(stiffness)
    centres: list[tuple[float, float]] = []
    min_sep_km = 3.0 * p.cluster_radius_km
    for _ in range(10_000):
        if len(centres) == p.n_clusters:
            break
        lat, lon = rng.uniform(*p.lat_range_deg), rng.uniform(*p.lon_range_deg)
        seps = [distance_km(lat, lon, c[0], c[1]) for c in centres]
        if all(s >= min_sep_km for s in seps):
            centres.append((lat, lon))
    while len(centres) < p.n_clusters:  # region too small for the separation: accept overlap
        centres.append((rng.uniform(*p.lat_range_deg), rng.uniform(*p.lon_range_deg)))
    clusters = []
    for k, ((lat, lon), s) in enumerate(zip(centres, stiffness, strict=True)):
        clusters.append(
            Cluster(
                k,
                float(lat),
                float(lon),
                vs0_median_mps=_log_interp(p.vs0_soft_mps, p.vs0_stiff_mps, s),
                soil_depth_median_m=_log_interp(p.soil_depth_soft_m, p.soil_depth_stiff_m, s),
                vs_rock_median_mps=_log_interp(p.vs_rock_soft_mps, p.vs_rock_stiff_mps, s),
            )
        )
    return clusters


def _log_interp(soft: float, stiff: float, stiffness: float) -> float:
    return float(np.exp(np.log(soft) + stiffness * np.log(stiff / soft)))


def soil_kappa_s(profile: SiteProfile) -> float:
    """κ of the soil column from its damping: t* = Σ h/(Q Vs) with Q = 1/(2ξ)."""
    h = profile.thickness_m[:-1]
    return float(np.sum(2.0 * profile.damping_ratio[:-1] * h / profile.vs_mps[:-1]))


def make_station(p: SynthParams, cluster: Cluster, index: int) -> Station:
    """A station: position scattered about its cluster centre, profile scattered about the
    cluster's median site condition, a noise level independent of the site.

    κ0: Van Houtte et al. (2011) evaluated at the *bedrock* velocity gives the κ of the rock
    below the site; the soil column adds its own damping through the SH propagator, so the
    surface κ0 still rises as sites soften (Station.kappa0_s). Evaluating Van Houtte at the
    site's Vs30 on top of the 1-D amplification made soft sites' PGA *smaller* than rock
    (ln PGA site term ≈ +0.2 per ln(Vs30/760)), against the NGA-West2 weak-motion term
    (≈ -0.6, PHYSICS.md "Sanity ranges"); its slope is fitted mostly on stiff KiK-net sites.
    """
    rng = _rng(p.seed, STREAM_STATIONS, index)
    north_km, east_km = rng.normal(0.0, p.cluster_radius_km / 1.5, 2)
    dlat, dlon = _offset_deg(cluster.lat_deg, north_km, east_km)
    lat, lon = _clip_to_region(p, cluster.lat_deg + dlat, cluster.lon_deg + dlon)
    vs_rock = float(
        np.clip(
            cluster.vs_rock_median_mps * np.exp(rng.normal(0, p.vs_rock_sigma_ln)),
            VS_BEDROCK_MIN_MPS,
            3000.0,
        )
    )
    vs0 = min(cluster.vs0_median_mps * np.exp(rng.normal(0, p.vs0_sigma_ln)), 0.85 * vs_rock)
    depth_m = float(
        np.clip(
            cluster.soil_depth_median_m * np.exp(rng.normal(0, p.soil_depth_sigma_ln)), 1.0, 400.0
        )
    )
    profile = random_profile(rng, float(vs0), depth_m, vs_rock, float(rng.uniform(0.15, 0.4)))
    kappa_rock = float(
        np.clip(
            st.kappa0_van_houtte_s(vs_rock) * np.exp(rng.normal(0, p.kappa_sigma_ln)),
            *KAPPA_RANGE_S,
        )
    )
    noise_rms = float(np.exp(rng.uniform(*np.log(p.noise_rms_range_mps2))))
    f0 = sr.fundamental_frequency_hz(profile)
    return Station(
        index=index,
        code=f"S{index:04d}",
        cluster=cluster.index,
        lat_deg=round(lat, STATION_COORD_DECIMALS),
        lon_deg=round(lon, STATION_COORD_DECIMALS),
        profile=profile,
        vs30_mps=round(profile.vs30_mps, VS30_DECIMALS),
        f0_hz=round(f0, F0_DECIMALS),
        kappa_rock_s=round(kappa_rock, KAPPA_DECIMALS),
        noise_rms_mps2=round(noise_rms, NOISE_RMS_DECIMALS),
    )


def make_stations(p: SynthParams, clusters: list[Cluster]) -> list[Station]:
    return [make_station(p, clusters[i % len(clusters)], i) for i in range(p.n_stations)]


def _gutenberg_richter(rng: np.random.Generator, m_min: float, m_max: float, b: float) -> float:
    """Truncated exponential (Gutenberg-Richter) magnitude."""
    u = rng.uniform()
    return float(m_min - np.log10(1.0 - u * (1.0 - 10.0 ** (-b * (m_max - m_min)))) / b)


def make_event(p: SynthParams, clusters: list[Cluster], index: int) -> Event:
    """Crustal event: most near a cluster (seismicity and networks share the active zones)."""
    rng = _rng(p.seed, STREAM_EVENTS, index)
    if rng.uniform() < p.clustered_event_fraction:
        c = clusters[int(rng.integers(len(clusters)))]
        north_km, east_km = rng.normal(0.0, CLUSTER_EVENT_SIGMA_KM, 2)
        dlat, dlon = _offset_deg(c.lat_deg, north_km, east_km)
        lat, lon = _clip_to_region(p, c.lat_deg + dlat, c.lon_deg + dlon)
    else:
        lat, lon = rng.uniform(*p.lat_range_deg), rng.uniform(*p.lon_range_deg)
    origin_s = round(rng.uniform(0, CATALOGUE_SPAN_S), ORIGIN_TIME_DECIMALS)
    origin = CATALOGUE_START + timedelta(seconds=origin_s)
    return Event(
        index=index,
        source_id=f"{p.network_code}E{index:05d}",
        origin_time=origin,
        lat_deg=round(float(lat), EVENT_COORD_DECIMALS),
        lon_deg=round(float(lon), EVENT_COORD_DECIMALS),
        depth_km=round(float(rng.uniform(*p.depth_range_km)), DEPTH_DECIMALS),
        mw=round(
            _gutenberg_richter(rng, *p.magnitude_range, p.gutenberg_richter_b), MAGNITUDE_DECIMALS
        ),
        stress_drop_bar=round(
            float(
                np.clip(
                    p.stress_drop_median_bar * np.exp(rng.normal(0, p.stress_drop_sigma_ln)),
                    10,
                    400,
                )
            ),
            STRESS_DROP_DECIMALS,
        ),
    )


def make_events(p: SynthParams, clusters: list[Cluster]) -> list[Event]:
    events = [make_event(p, clusters, k) for k in range(p.n_events)]
    return sorted(events, key=lambda e: (e.origin_time, e.index))


class Synthesizer:
    """Turns (event, station) into a 3-component accelerogram on a fixed FFT grid.

    The site spectra of a station (crust × soil column × κ) are computed once and cached.
    """

    def __init__(self, p: SynthParams):
        self.p = p
        self.fs_hz = p.sampling_rate_hz
        self.dt_s = 1.0 / self.fs_hz
        n_min = int(np.ceil((p.max_record_s + WRAP_MARGIN_S) * self.fs_hz))
        self.nfft = 1 << int(np.ceil(np.log2(n_min)))
        self.freq_hz = np.fft.rfftfreq(self.nfft, self.dt_s)
        self._site: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._source: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def site_spectra(self, sta: Station) -> tuple[np.ndarray, np.ndarray]:
        """(horizontal, vertical) complex site factors from source-depth rock to the surface:
        crustal amplification × soil-column transfer function × exp(-π κ_rock f).

        Kept in complex128: a cast to complex64 is a relative rounding whose rare flips
        (a 1e-15 difference straddling a float32 step) would reach every record of the
        station at 1e-9 of its amplitude, well above the 1e-15 the waveform grid absorbs.
        """
        if sta.index not in self._site:
            prof, f = sta.profile, self.freq_hz
            crust = sr.crustal_amplification(f, prof.vs_mps[-1], prof.density_kgm3[-1])
            common = crust * st.kappa_filter(f, sta.kappa_rock_s)
            horizontal = common * sr.sh_transfer_function(f, prof)
            sigma_ln = self.p.site_scatter_sigma_ln
            if sigma_ln > 0:
                rng = _rng(self.p.seed, STREAM_SITE_SCATTER, sta.index)
                horizontal = scaled(horizontal, self.site_scatter(rng, sigma_ln))
            self._site[sta.index] = (horizontal, common * sr.p_transfer_function(f, prof))
        return self._site[sta.index]

    def site_scatter(self, rng: np.random.Generator, sigma_ln: float) -> np.ndarray:
        """A smooth random amplitude factor over the frequency grid, exp(sigma_ln x z(f)):
        z is Gaussian at nodes every ``site_scatter_octaves`` from 0.05 Hz to Nyquist and linear
        in log2 f between them (its sd dips between nodes). Zero phase; rounded (byte
        stability, see above). What a 1-D column cannot give: basin edges, topography,
        lateral heterogeneity, soil-structure interaction; H/V then varies at one Vs30."""
        octaves = self.p.site_scatter_octaves
        n_nodes = int(np.ceil(np.log2(self.freq_hz[-1] / SITE_SCATTER_FMIN_HZ) / octaves)) + 1
        z_nodes = rng.standard_normal(n_nodes)
        position = np.log2(np.maximum(self.freq_hz, SITE_SCATTER_FMIN_HZ) / SITE_SCATTER_FMIN_HZ)
        z = np.interp(position / octaves, np.arange(n_nodes), z_nodes)
        return np.round(np.exp(sigma_ln * z), SITE_SCATTER_DECIMALS)

    def source_spectra(self, ev: Event) -> tuple[np.ndarray, np.ndarray]:
        """(S, P) source spectra of an event at 1 km (m/s), cached for its stations."""
        if ev.index not in self._source:
            self._source = {}  # events are processed one after another: keep only this one
            fc = ev.fc_hz
            self._source[ev.index] = (
                st.source_spectrum(self.freq_hz, ev.mw, fc, "S"),
                st.source_spectrum(self.freq_hz, ev.mw, st.P_CORNER_RATIO * fc, "P"),
            )
        return self._source[ev.index]

    def path_spectra(self, ev: Event, r_km: float) -> tuple[np.ndarray, np.ndarray]:
        """(S, P) spectra at the station before the site: source × G(R) × Q."""
        src_s, src_p = self.source_spectra(ev)
        g = st.geometric_spreading(r_km)
        p = self.p
        q_s = st.anelastic_attenuation(self.freq_hz, r_km, p.q0, p.q_eta, st.BETA_KMPS)
        q_p = st.anelastic_attenuation(self.freq_hz, r_km, p.q0, p.q_eta, st.ALPHA_KMPS)
        return src_s * g * q_s, src_p * g * q_p

    def expected_pga_mps2(self, ev: Event, sta: Station, r_km: float) -> float:
        """Random-vibration PGA estimate of the horizontal S motion (trigger decision)."""
        path_s, _ = self.path_spectra(ev, r_km)
        h_site, _ = self.site_spectra(sta)
        amp = path_s * np.abs(h_site)
        return st.rvt_peak_estimate(self.freq_hz, amp, st.duration_s(ev.fc_hz, r_km))

    def pre_event_samples(self, ev: Event, sta: Station) -> int:
        """Samples of noise before P: ``pre_event_s``, or with ``pre_event_range_s`` a uniform
        draw per record (a triggered recorder keeps a few seconds before its trigger)."""
        p = self.p
        if p.pre_event_range_s is None:
            return int(round(p.pre_event_s * self.fs_hz))
        lo_s, hi_s = p.pre_event_range_s
        rng = _rng(p.seed, STREAM_PRE_EVENT, ev.index, sta.index)
        return int(rng.integers(round(lo_s * self.fs_hz), round(hi_s * self.fs_hz) + 1))

    def timing(self, ev: Event, r_km: float, p_sample: int) -> tuple[int, int, int, float, float]:
        """(n_samples, p_sample, s_sample, S window s, P window s) of a record."""
        p = self.p
        t_p, t_s = r_km / st.ALPHA_KMPS, r_km / st.BETA_KMPS
        s_sample = p_sample + int(round((t_s - t_p) * self.fs_hz))
        tw_s = st.WINDOW_DURATION_FACTOR * st.duration_s(ev.fc_hz, r_km)
        tw_p = st.WINDOW_DURATION_FACTOR * st.duration_s(st.P_CORNER_RATIO * ev.fc_hz, r_km)
        needed_s = s_sample / self.fs_hz + tw_s
        length_s = float(np.clip(10.0 * np.ceil(needed_s / 10.0), p.min_record_s, p.max_record_s))
        return int(round(length_s * self.fs_hz)), p_sample, s_sample, tw_s, tw_p

    def record(self, ev: Event, sta: Station, r_km: float) -> tuple[np.ndarray, int, int]:
        """Acceleration (3, n) ZNE in m/s², with its P and S arrival samples."""
        n, p_sample, s_sample, tw_s, tw_p = self.timing(ev, r_km, self.pre_event_samples(ev, sta))
        rng = _rng(self.p.seed, STREAM_RECORDS, ev.index, sta.index)
        t_s = np.arange(self.nfft) * self.dt_s
        env = np.empty((2, self.nfft))
        env[0] = st.saragoni_hart_window(t_s - s_sample * self.dt_s, tw_s)
        env[1] = st.saragoni_hart_window(t_s - p_sample * self.dt_s, tw_p)
        env[:, n:] = 0.0  # a triggered record ends; the buffer beyond is wrap margin
        # rows: S on Z, N, E, then P on Z, N, E (independent noise: random polarisation)
        noise = rng.standard_normal((6, self.nfft)) * np.repeat(env, 3, axis=0)
        spec = st.normalised_noise_spectrum(noise)
        path_s, path_p = self.path_spectra(ev, r_km)
        h_site, v_site = self.site_spectra(sta)
        s_part, p_part = spec[:3] * path_s, spec[3:] * path_p
        out = np.empty((3, self.freq_hz.size), dtype=complex)
        out[0] = complex_product(VERTICAL_S_RATIO * s_part[0] + p_part[0], v_site)
        out[1:] = complex_product(s_part[1:], self.record_site(h_site, ev, sta)) + complex_product(
            HORIZONTAL_P_RATIO * p_part[1:], v_site
        )
        acc = np.fft.irfft(out, n=self.nfft, axis=-1)[:, :n] / self.dt_s
        acc += sta.noise_rms_mps2 * rng.standard_normal((3, n))  # instrument/site noise floor
        return round_to_noise_grid(acc, sta.noise_rms_mps2), p_sample, s_sample

    def record_site(self, h_site: np.ndarray, ev: Event, sta: Station) -> np.ndarray:
        """The horizontal site factor of one record: (2, n_freq), N and E each with its own
        random amplitude when ``site_scatter_record_sigma_ln`` > 0 (azimuth, incidence and
        the event's own path near the site), else the station's on both."""
        sigma_ln = self.p.site_scatter_record_sigma_ln
        if sigma_ln <= 0:
            return h_site
        rng = _rng(self.p.seed, STREAM_SITE_SCATTER, sta.index, ev.index)
        return np.stack([scaled(h_site, self.site_scatter(rng, sigma_ln)) for _ in range(2)])


def scaled(a: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Complex ``a`` times a real ``factor``, by its real and imaginary parts (IEEE-exact)."""
    out = np.empty(np.broadcast_shapes(np.shape(a), np.shape(factor)), dtype=complex)
    out.real, out.imag = a.real * factor, a.imag * factor
    return out


def complex_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a · b with each real product and sum rounded once, the same on every CPU.

    numpy's complex multiply loops are SIMD-dispatched (AVX2, AVX-512 or baseline SSE, likely
    with fused multiply-add in the first two), and ``a * b`` differed in its last bit between
    them (measured with NPY_DISABLE_CPU_FEATURES); real multiply and add are IEEE-exact.
    """
    out = np.empty(np.broadcast_shapes(np.shape(a), np.shape(b)), dtype=complex)
    out.real = a.real * b.real - a.imag * b.imag
    out.imag = a.real * b.imag + a.imag * b.real
    return out


def round_to_noise_grid(acc_mps2: np.ndarray, noise_rms_mps2: float) -> np.ndarray:
    """Round to a multiple of 2^k m/s², the largest power of two ≤ noise_rms / 2^8.

    The step is exact (frexp, no logarithm) and the scaling by a power of two is exact, so the
    grid is the same on every machine; a value moves to another grid point only when a
    last-bit difference straddles a half step (measured under glibc's and numpy's other code
    paths: ~1e-12 per sample).
    """
    _, exponent = math.frexp(noise_rms_mps2)  # noise_rms in [2^(exponent-1), 2^exponent)
    step = math.ldexp(1.0, exponent - 1 - WAVEFORM_STEP_BELOW_NOISE_BITS)
    return np.round(acc_mps2 / step) * step


def plan_records(
    p: SynthParams, synth: Synthesizer, stations: list[Station], events: list[Event]
) -> list[tuple[Event, Station, float]]:
    """(event, station, R_hyp) of every record that triggers: R ≤ max distance and the
    expected PGA above both the trigger level and ``trigger_snr`` × the station noise."""
    lats = np.array([s.lat_deg for s in stations])
    lons = np.array([s.lon_deg for s in stations])
    pairs = []
    for ev in events:
        r_epi = distance_km(ev.lat_deg, ev.lon_deg, lats, lons)
        r_hyp = np.hypot(r_epi, ev.depth_km)
        for i in np.flatnonzero(r_hyp <= p.max_distance_km):
            sta, r = stations[i], round(float(r_hyp[i]), DISTANCE_DECIMALS)
            threshold = max(p.trigger_pga_mps2, p.trigger_snr * sta.noise_rms_mps2)
            if synth.expected_pga_mps2(ev, sta, r) >= threshold:
                pairs.append((ev, sta, r))
    return pairs


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def picked_arrivals(p: SynthParams, ev: Event, sta: Station, p_sample: int, s_sample: int):
    """(P, S, status) as a picker would write them: the true samples, or with
    ``p_pick_error_s`` / ``s_pick_error_s`` Gaussian errors on them (P kept inside the record
    and S at least one sample after P)."""
    if p.p_pick_error_s <= 0 and p.s_pick_error_s <= 0:
        return p_sample, s_sample, "synthetic"
    rng = _rng(p.seed, STREAM_PICK_ERROR, ev.index, sta.index)
    fs_hz = p.sampling_rate_hz
    p_err, s_err = rng.standard_normal(2) * (p.p_pick_error_s * fs_hz, p.s_pick_error_s * fs_hz)
    p_picked = max(1, p_sample + int(round(p_err)))
    return p_picked, max(p_picked + 1, s_sample + int(round(s_err))), "synthetic_picked"


def record_metadata(
    p: SynthParams, ev: Event, sta: Station, r_km: float, p_sample: int, s_sample: int
) -> dict:
    """One record's row; ``p_sample`` is the true P (the start time is origin + P time
    - pre-event), the arrivals written are :func:`picked_arrivals`'."""
    t_p_s = r_km / st.ALPHA_KMPS
    pre_event_s = p_sample / p.sampling_rate_hz
    start = ev.origin_time + timedelta(seconds=round(t_p_s - pre_event_s, START_TIME_DECIMALS))
    p_written, s_written, status = picked_arrivals(p, ev, sta, p_sample, s_sample)
    r_epi = float(distance_km(ev.lat_deg, ev.lon_deg, np.array(sta.lat_deg), np.array(sta.lon_deg)))
    return {
        "trace_name": f"{p.network_code}.{sta.code}.{ev.source_id}",
        "station_network_code": p.network_code,
        "station_code": sta.code,
        "station_latitude_deg": sta.lat_deg,
        "station_longitude_deg": sta.lon_deg,
        "station_vs30_mps": sta.vs30_mps,
        "station_vs30_method": "synthetic",
        "station_cluster": sta.cluster,
        "station_f0_hz": sta.f0_hz,
        "source_id": ev.source_id,
        "source_origin_time": _iso(ev.origin_time),
        "source_magnitude": ev.mw,
        "source_magnitude_type": "Mw",
        "source_latitude_deg": ev.lat_deg,
        "source_longitude_deg": ev.lon_deg,
        "source_depth_km": ev.depth_km,
        "path_ep_distance_km": round(r_epi, DISTANCE_DECIMALS),
        "path_hyp_distance_km": r_km,
        "trace_sampling_rate_hz": p.sampling_rate_hz,
        "trace_p_arrival_sample": p_written,
        "trace_p_status": status,
        "trace_s_arrival_sample": s_written,
        "trace_s_status": status,
        "trace_start_time": _iso(start),
    }


def iter_records(
    p: SynthParams, synth: Synthesizer, pairs: list[tuple[Event, Station, float]]
) -> Iterator[tuple[dict, np.ndarray]]:
    for ev, sta, r_km in pairs:
        acc, p_sample, s_sample = synth.record(ev, sta, r_km)
        yield record_metadata(p, ev, sta, r_km, p_sample, s_sample), acc


def station_table(stations: list[Station], pairs: list) -> pd.DataFrame:
    counts: dict[int, int] = {}
    for _, sta, _ in pairs:
        counts[sta.index] = counts.get(sta.index, 0) + 1
    return pd.DataFrame(
        [
            {
                "station_code": s.code,
                "station_cluster": s.cluster,
                "station_latitude_deg": s.lat_deg,
                "station_longitude_deg": s.lon_deg,
                "station_vs30_mps": s.vs30_mps,
                "station_f0_hz": s.f0_hz,
                "depth_to_bedrock_m": round(s.profile.depth_to_bedrock_m, 2),
                "kappa0_s": round(s.kappa0_s, KAPPA_DECIMALS),
                "noise_rms_mps2": s.noise_rms_mps2,
                "n_records": counts[s.index],
            }
            for s in stations
            if s.index in counts
        ]
    )


def generate(p: SynthParams, out_dir: str | Path) -> SynthSummary:
    """Generate the corpus into ``out_dir`` (replaced atomically); returns counts and time."""
    t0 = time.perf_counter()
    clusters = make_clusters(p)
    stations = make_stations(p, clusters)
    events = make_events(p, clusters)
    synth = Synthesizer(p)
    pairs = plan_records(p, synth, stations, events)
    if not pairs:
        raise ConfigError("synth: no station-event pair triggers; raise n_events or n_stations")
    stations_used = station_table(stations, pairs)
    used = set(stations_used["station_code"])
    profiles = pd.DataFrame(
        [row for s in stations if s.code in used for row in profile_rows(s.code, s.profile)]
    )
    log.info(
        "synth: %d records from %d events at %d stations",
        len(pairs),
        len({e.index for e, _, _ in pairs}),
        len(used),
    )
    write_dataset(
        out_dir,
        iter_records(p, synth, pairs),
        side_tables={"profiles": profiles, "stations": stations_used},
        total=len(pairs),
    )
    return SynthSummary(
        out_dir=Path(out_dir),
        n_records=len(pairs),
        n_stations=len(used),
        n_events=len({e.index for e, _, _ in pairs}),
        elapsed_s=time.perf_counter() - t0,
    )
