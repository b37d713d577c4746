"""Linear 1-D site response for vertically incident plane waves (PHYSICS.md, "Site response").

The Thomson-Haskell propagator (Kramer 1996, ch. 7) is vectorised over all frequencies at
once; the loop runs over layers only. Damping enters through the complex modulus
G* = G (1 + 2 i xi) (PHYSICS.md), so the complex velocity is V* = V sqrt(1 + 2 i xi).
The time convention is numpy's (x(t) = sum X(f) exp(+2 pi i f t)), the one of Kramer's
derivation, so the transfer functions are causal as computed.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from deepvs30.synth.profiles import SiteProfile

SOURCE_VS_MPS = 3500.0  # Boore (2003) source-region shear velocity
SOURCE_DENSITY_KGM3 = 2800.0
CRUST_GRADIENT_DEPTH_M = 8000.0  # depth where the crust reaches the source velocity
CRUST_GRADIENT_EXPONENT = 0.5


def layered_transfer_function(
    freq_hz: np.ndarray,
    thickness_m: np.ndarray,
    velocity_mps: np.ndarray,
    density_kgm3: np.ndarray,
    damping_ratio: np.ndarray,
) -> np.ndarray:
    """Outcropping-bedrock → surface transfer function of a layered profile (complex).

    Layers run from the surface down; the last one is the half-space (its thickness is not
    used). Up- and down-going amplitudes start at 1 at the free surface and are propagated
    down (Kramer 1996, eq. 7.34); the outcrop motion is twice the up-going bedrock wave, so
    TF = (A_1 + B_1) / (2 A_n) = 1 / A_n.
    """
    omega = 2.0 * np.pi * np.asarray(freq_hz, dtype=float)
    v_c = np.asarray(velocity_mps, float) * np.sqrt(1.0 + 2j * np.asarray(damping_ratio, float))
    impedance = np.asarray(density_kgm3, float) * v_c
    a = np.ones_like(omega, dtype=complex)
    b = np.ones_like(omega, dtype=complex)
    for i in range(len(v_c) - 1):
        ratio = impedance[i] / impedance[i + 1]
        phase = np.exp(1j * omega * thickness_m[i] / v_c[i])
        a, b = (
            0.5 * (a * (1 + ratio) * phase + b * (1 - ratio) / phase),
            0.5 * (a * (1 - ratio) * phase + b * (1 + ratio) / phase),
        )
    return 1.0 / a


def sh_transfer_function(freq_hz: np.ndarray, profile: SiteProfile) -> np.ndarray:
    """Horizontal (SH) outcrop → surface transfer function."""
    return layered_transfer_function(
        freq_hz, profile.thickness_m, profile.vs_mps, profile.density_kgm3, profile.damping_ratio
    )


def p_transfer_function(freq_hz: np.ndarray, profile: SiteProfile) -> np.ndarray:
    """Vertical (P) outcrop → surface transfer function: same propagator with Vp.

    P damping is taken as half the S damping (Qp ≈ 2 Qs). Since Vp >> Vs in soils the P
    resonance sits several times higher than f0 and the vertical is amplified far less at
    f0, which is why H/V peaks there (PHYSICS.md).
    """
    return layered_transfer_function(
        freq_hz,
        profile.thickness_m,
        profile.vp_mps,
        profile.density_kgm3,
        0.5 * profile.damping_ratio,
    )


def fundamental_frequency_hz(
    profile: SiteProfile, fmin_hz: float = 0.1, fmax_hz: float = 40.0
) -> float:
    """f0: lowest clear peak of |SH transfer function| (on a fine log grid).

    A peak counts when its prominence reaches 20 % of the largest peak's amplification above
    1; a nearly flat (rock) response gives its largest peak. The quarter-wavelength estimate
    V̄s/(4H) (PHYSICS.md) is close to this for a strong soil/rock contrast.
    """
    freq = np.geomspace(fmin_hz, fmax_hz, 2000)
    amp = np.abs(sh_transfer_function(freq, profile))
    peaks, props = find_peaks(amp, prominence=0.0)
    if len(peaks) == 0:
        return float(freq[np.argmax(amp)])
    strongest = np.max(amp[peaks]) - 1.0
    clear = peaks[props["prominences"] >= 0.2 * max(strongest, 1e-3)]
    return float(freq[clear[0]] if len(clear) else freq[peaks[np.argmax(amp[peaks])]])


def crustal_amplification(
    freq_hz: np.ndarray, vs_bedrock_mps: float, density_bedrock_kgm3: float
) -> np.ndarray:
    """Generic crustal amplification from the source (3.5 km/s) up to the bedrock top.

    Quarter-wavelength method (Boore & Joyner 1997; PHYSICS.md) over a crust whose Vs rises
    from the bedrock value to the source value at 8 km as a square-root gradient. The Boore
    (2003) site term includes this; the soil column on top is added by the SH propagator.
    """
    depth_m = np.geomspace(0.1, 40_000.0, 2000)
    frac = np.clip(depth_m / CRUST_GRADIENT_DEPTH_M, 0.0, 1.0) ** CRUST_GRADIENT_EXPONENT
    vs_z = vs_bedrock_mps + (SOURCE_VS_MPS - vs_bedrock_mps) * frac
    rho_z = density_bedrock_kgm3 + (SOURCE_DENSITY_KGM3 - density_bedrock_kgm3) * frac
    dz = np.diff(depth_m, prepend=0.0)
    travel_s = np.cumsum(dz / vs_z)
    mean_rho = np.cumsum(dz * rho_z) / depth_m
    f = np.maximum(np.asarray(freq_hz, dtype=float), 1e-6)
    # depth whose travel time is a quarter period; average velocity and density above it
    z_qw = np.interp(1.0 / (4.0 * f), travel_s, depth_m)
    t_qw = np.interp(z_qw, depth_m, travel_s)
    v_bar = z_qw / t_qw
    rho_bar = np.interp(z_qw, depth_m, mean_rho)
    return np.sqrt(SOURCE_DENSITY_KGM3 * SOURCE_VS_MPS / (rho_bar * v_bar))
