"""Typed ``synth:`` section of params.yaml (built by ``config.section(params, "synth", ...)``)."""

from __future__ import annotations

from dataclasses import dataclass

from deepvs30.errors import ConfigError


@dataclass(frozen=True)
class SynthParams:
    seed: int = 20240501
    n_stations: int = 200
    n_events: int = 140
    n_clusters: int = 5
    network_code: str = "SY"
    # region (a Türkiye-sized box) and station clusters
    lat_range_deg: tuple[float, float] = (36.5, 41.5)
    lon_range_deg: tuple[float, float] = (27.0, 44.0)
    cluster_radius_km: float = 45.0
    # site conditions: cluster medians range from soft basin to rock (surface Vs, soil depth)
    vs0_soft_mps: float = 150.0
    vs0_stiff_mps: float = 420.0
    soil_depth_soft_m: float = 80.0
    soil_depth_stiff_m: float = 3.0
    vs0_sigma_ln: float = 0.3
    soil_depth_sigma_ln: float = 0.7
    vs_rock_soft_mps: float = 800.0
    vs_rock_stiff_mps: float = 1400.0
    vs_rock_sigma_ln: float = 0.35
    kappa_sigma_ln: float = 0.3
    # events
    magnitude_range: tuple[float, float] = (3.5, 7.0)
    gutenberg_richter_b: float = 0.8
    depth_range_km: tuple[float, float] = (5.0, 25.0)
    clustered_event_fraction: float = 0.7
    stress_drop_median_bar: float = 80.0
    stress_drop_sigma_ln: float = 0.5
    q0: float = 180.0
    q_eta: float = 0.45
    max_distance_km: float = 200.0
    # instrument and triggering
    sampling_rate_hz: float = 100.0
    pre_event_s: float = 10.0
    # realism options (synthetic-to-real gap, issue 13), all off by default: the default
    # corpus is unchanged by them
    pre_event_range_s: tuple[float, float] | None = None  # noise before P, uniform per record
    p_pick_error_s: float = 0.0  # sd of the error on the written P arrival (the waveform's true)
    s_pick_error_s: float = 0.0  # ... and on the S arrival
    site_scatter_sigma_ln: float = 0.0  # non-1-D site effects: ln amplitude on the horizontals
    site_scatter_record_sigma_ln: float = 0.0  # ... and per record and component
    site_scatter_octaves: float = 0.5  # node spacing of the smooth random ln amplitude
    min_record_s: float = 60.0
    max_record_s: float = 140.0
    noise_rms_range_mps2: tuple[float, float] = (2e-4, 1e-3)
    trigger_pga_mps2: float = 0.005
    trigger_snr: float = 10.0

    def __post_init__(self) -> None:
        lo_hi = self.pre_event_range_s
        if lo_hi is not None and not 0.0 < lo_hi[0] <= lo_hi[1]:
            raise ConfigError(f"synth.pre_event_range_s: {lo_hi}, expected 0 < min <= max")
        for name in ("p_pick_error_s", "s_pick_error_s", "site_scatter_sigma_ln",
                     "site_scatter_record_sigma_ln"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigError(f"synth.{name}: {getattr(self, name)}, expected >= 0")
        if self.site_scatter_octaves <= 0:
            octaves = self.site_scatter_octaves
            raise ConfigError(f"synth.site_scatter_octaves: {octaves}, expected > 0")
