"""Layered 1-D site profiles over engineering bedrock (PHYSICS.md, "Site response").

A profile is a stack of soil layers over a bedrock half-space (Vs >= 760 m/s). Vs grows with
depth as a power-law gradient Vs(z) = Vs0 (1 + z/z0)^n with random layer-to-layer scatter
(in the spirit of Toro 1995); density and small-strain damping follow from Vs. Vs30 is
always *computed* from the layers (travel-time average), never drawn on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VS_BEDROCK_MIN_MPS = 760.0  # engineering bedrock (NEHRP B/C boundary)
GRADIENT_Z0_M = 5.0  # reference depth of the power-law gradient
LAYER_SCATTER_SIGMA_LN = 0.12  # layer-to-layer ln Vs scatter (Toro 1995 order of magnitude)
LAYER_SCATTER_CORR = 0.5  # correlation of ln Vs residuals between adjacent layers
POISSON_SOIL = (0.30, 0.45)  # dry to near-saturated soils
POISSON_ROCK = 0.25  # bedrock: Vp = sqrt(3) Vs


@dataclass(frozen=True)
class SiteProfile:
    """Layers from the surface down; the last entry is the bedrock half-space (thickness inf)."""

    thickness_m: np.ndarray
    vs_mps: np.ndarray
    vp_mps: np.ndarray
    density_kgm3: np.ndarray
    damping_ratio: np.ndarray

    @property
    def vs30_mps(self) -> float:
        return vs30_mps(self.thickness_m, self.vs_mps)

    @property
    def depth_to_bedrock_m(self) -> float:
        return float(np.sum(self.thickness_m[:-1]))

    @property
    def n_layers(self) -> int:
        return len(self.vs_mps)


def vs30_mps(thickness_m: np.ndarray, vs_mps: np.ndarray, depth_m: float = 30.0) -> float:
    """Time-averaged Vs of the top ``depth_m``: 30 / sum(h_i / Vs_i) (PHYSICS.md)."""
    top = np.concatenate([[0.0], np.cumsum(thickness_m)])
    h_in = np.clip(np.minimum(top[1:], depth_m) - top[:-1], 0.0, None)
    return float(depth_m / np.sum(h_in / np.asarray(vs_mps, dtype=float)))


def vp_from_vs(vs_mps: np.ndarray, poisson: np.ndarray | float) -> np.ndarray:
    """Vp = Vs sqrt(2(1-nu)/(1-2nu)) for Poisson ratio nu."""
    nu = np.asarray(poisson, dtype=float)
    return np.asarray(vs_mps) * np.sqrt(2.0 * (1.0 - nu) / (1.0 - 2.0 * nu))


def density_from_vs(vs_mps: np.ndarray) -> np.ndarray:
    """Density in kg/m³ rising with stiffness: 1.7 g/cm³ for soft soil, ~2.1 at 760 m/s,
    ~2.4 for hard rock (PHYSICS.md: 1.7-2.2 g/cm³ in soils)."""
    rho_gcm3 = 1.6 + 0.25 * np.log(np.asarray(vs_mps) / 100.0)
    return 1000.0 * np.clip(rho_gcm3, 1.7, 2.6)


def damping_from_vs(vs_mps: np.ndarray) -> np.ndarray:
    """Small-strain damping ratio xi = 3/Vs (Vs in m/s): 2 % at 150 m/s, 1 % from 300 m/s,
    the order of Darendeli's (2001) minimum damping, bounded to 1-5 % (PHYSICS.md);
    bedrock is given 0.5 % by the caller."""
    return np.clip(3.0 / np.asarray(vs_mps), 0.01, 0.05)


def layer_thicknesses_m(depth_to_rock_m: float) -> np.ndarray:
    """Layers 1 m thick at the surface, thickening ~25 % per layer, summing to the depth."""
    edges = [0.0]
    h = 1.0
    while edges[-1] + h < depth_to_rock_m:
        edges.append(edges[-1] + h)
        h *= 1.25
    if depth_to_rock_m - edges[-1] < 0.5 * h and len(edges) > 1:
        edges.pop()  # merge a thin remainder into the layer above
    edges.append(depth_to_rock_m)
    return np.diff(np.asarray(edges))


def random_profile(
    rng: np.random.Generator,
    vs0_mps: float,
    depth_to_rock_m: float,
    vs_rock_mps: float,
    gradient_n: float,
) -> SiteProfile:
    """One randomised layered profile: power-law gradient + correlated layer scatter."""
    h_m = layer_thicknesses_m(depth_to_rock_m)
    z_mid_m = np.cumsum(h_m) - 0.5 * h_m
    vs_soil = vs0_mps * (1.0 + z_mid_m / GRADIENT_Z0_M) ** gradient_n
    eps = _ar1(rng, len(h_m), LAYER_SCATTER_CORR) * LAYER_SCATTER_SIGMA_LN
    # soil stays below the bedrock velocity so the soil/rock contrast exists
    vs_soil = np.minimum(vs_soil * np.exp(eps), 0.9 * vs_rock_mps)
    poisson_soil = rng.uniform(*POISSON_SOIL)
    vs = np.append(vs_soil, vs_rock_mps)
    vp = np.append(vp_from_vs(vs_soil, poisson_soil), vp_from_vs(vs_rock_mps, POISSON_ROCK))
    damping = np.append(damping_from_vs(vs_soil), 0.005)
    # rounded here so that profiles.csv holds exactly the profile the waveforms were made with
    return SiteProfile(
        thickness_m=np.append(np.round(h_m, 2), np.inf),
        vs_mps=np.round(vs, 2),
        vp_mps=np.round(vp, 2),
        density_kgm3=np.round(density_from_vs(vs), 1),
        damping_ratio=np.round(damping, 5),
    )


def _ar1(rng: np.random.Generator, n: int, corr: float) -> np.ndarray:
    """Unit-variance AR(1) sequence: adjacent layers are correlated, like real profiles."""
    white = rng.standard_normal(n)
    out = np.empty(n)
    out[0] = white[0]
    for i in range(1, n):
        out[i] = corr * out[i - 1] + np.sqrt(1.0 - corr**2) * white[i]
    return out


def profile_rows(station_code: str, profile: SiteProfile) -> list[dict]:
    """Rows of the ``profiles.csv`` side table: one per layer, bedrock last (thickness inf)."""
    return [
        {
            "station_code": station_code,
            "layer": i,
            "thickness_m": float(profile.thickness_m[i]),
            "vs_mps": float(profile.vs_mps[i]),
            "vp_mps": float(profile.vp_mps[i]),
            "density_kgm3": float(profile.density_kgm3[i]),
            "damping_ratio": float(profile.damping_ratio[i]),
        }
        for i in range(profile.n_layers)
    ]
