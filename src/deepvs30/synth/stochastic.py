"""Stochastic point-source model of Boore (2003, BSSA 93(2)): source, path, kappa, window.

Fourier acceleration amplitude (PHYSICS.md):
    A(f) = C M0 (2πf)² / (1 + (f/fc)²) · G(R) · exp(-π f R / (Q(f) β)) · Site(f) · exp(-π κ0 f)
Spectra here are in m/s (Fourier transform of acceleration in m/s²); the site factor is
applied by the caller (site_response).
"""

from __future__ import annotations

import numpy as np

BETA_KMPS = 3.5  # source shear velocity (Boore 2003)
RHO_GCM3 = 2.8  # source density
ALPHA_KMPS = np.sqrt(3.0) * BETA_KMPS  # P velocity, Poisson solid (PHYSICS.md)
RADIATION_S = 0.55  # average S radiation pattern
RADIATION_P = 0.52  # average P radiation pattern
PARTITION_H = 1.0 / np.sqrt(2.0)  # S energy on each of two horizontals
FREE_SURFACE = 2.0
R0_KM = 1.0
DYNE_CM_TO_M = 1e-20 / 100.0  # C·M0 with rho in g/cm³, beta in km/s → cm/s; /100 → m/s
P_CORNER_RATIO = 1.5  # fc(P) ≈ 1.5 fc(S) (e.g. Madariaga 1976), an assumption of this corpus
SH_EPSILON = 0.2  # Saragoni-Hart window shape (Boore 2003)
SH_ETA = 0.05
WINDOW_DURATION_FACTOR = 2.0  # window length Tw = 2 T (Boore 2003, f_Tgm)


def seismic_moment_dyne_cm(mw: float) -> float:
    """log10 M0 = 1.5 Mw + 16.05 (dyne·cm)."""
    return 10.0 ** (1.5 * mw + 16.05)


def corner_frequency_hz(mw: float, stress_drop_bar: float, beta_kmps: float = BETA_KMPS) -> float:
    """Brune corner frequency fc = 4.906e6 beta (Δσ / M0)^(1/3) (Boore 2003)."""
    return 4.906e6 * beta_kmps * (stress_drop_bar / seismic_moment_dyne_cm(mw)) ** (1.0 / 3.0)


def source_spectrum(freq_hz: np.ndarray, mw: float, fc_hz: float, wave: str = "S") -> np.ndarray:
    """Brune ω² acceleration source spectrum at R0 = 1 km (m/s), one component.

    S: C = R_θφ V F / (4 π ρ β³ R0), V = 1/√2 per horizontal. P: radiation 0.52, all on the
    vertical, and α³ instead of β³ (P lower than S by (β/α)³ at the source, PHYSICS.md).
    """
    if wave == "S":
        const = RADIATION_S * PARTITION_H * FREE_SURFACE / (4 * np.pi * RHO_GCM3 * BETA_KMPS**3)
    elif wave == "P":
        const = RADIATION_P * FREE_SURFACE / (4 * np.pi * RHO_GCM3 * ALPHA_KMPS**3)
    else:
        raise ValueError(f"wave must be 'S' or 'P', got {wave!r}")
    m0 = seismic_moment_dyne_cm(mw)
    two_pi_f = 2.0 * np.pi * np.asarray(freq_hz, dtype=float)
    shape = two_pi_f**2 / (1.0 + (np.asarray(freq_hz) / fc_hz) ** 2)
    return const / R0_KM * m0 * DYNE_CM_TO_M * shape


def geometric_spreading(r_km: float) -> float:
    """Atkinson & Boore (1995) trilinear: R⁻¹ to 70 km, R⁰ to 130 km, R^-0.5 beyond."""
    r = max(r_km, R0_KM)
    if r <= 70.0:
        return R0_KM / r
    if r <= 130.0:
        return R0_KM / 70.0
    return R0_KM / 70.0 * (130.0 / r) ** 0.5


def anelastic_attenuation(
    freq_hz: np.ndarray, r_km: float, q0: float, q_eta: float, velocity_kmps: float = BETA_KMPS
) -> np.ndarray:
    """exp(-π f R / (Q(f) v)) with Q(f) = Q0 f^η (180 f^0.45 in PHYSICS.md)."""
    f = np.maximum(np.asarray(freq_hz, dtype=float), 1e-6)
    return np.exp(-np.pi * f * r_km / (q0 * f**q_eta * velocity_kmps))


def kappa0_van_houtte_s(vs30_mps: float) -> float:
    """Van Houtte et al. (2011): ln κ0 = 3.490 − 1.062 ln Vs30 (κ0 in s, Vs30 in m/s)."""
    return float(np.exp(3.490 - 1.062 * np.log(vs30_mps)))


def kappa_filter(freq_hz: np.ndarray, kappa_s: float) -> np.ndarray:
    return np.exp(-np.pi * kappa_s * np.asarray(freq_hz, dtype=float))


def duration_s(fc_hz: float, r_km: float) -> float:
    """Ground-motion duration T = 1/fc + 0.05 R (Boore 2003 / PHYSICS.md)."""
    return 1.0 / fc_hz + 0.05 * r_km


def saragoni_hart_window(
    t_s: np.ndarray, window_s: float, epsilon: float = SH_EPSILON, eta: float = SH_ETA
) -> np.ndarray:
    """Saragoni & Hart envelope w(t) = a (t/Tw)^b exp(-c t/Tw) (Boore 2003, eq. 4).

    Peaks (value 1) at t = ε Tw and falls to η at t = Tw; zero for t < 0.
    """
    b = -epsilon * np.log(eta) / (1.0 + epsilon * (np.log(epsilon) - 1.0))
    c = b / epsilon
    a = (np.e / epsilon) ** b
    x = np.clip(np.asarray(t_s, dtype=float) / window_s, 0.0, None)
    return a * x**b * np.exp(-c * x)


def normalised_noise_spectrum(windowed_noise: np.ndarray) -> np.ndarray:
    """rfft of windowed Gaussian noise scaled to unit mean-square amplitude (Boore 2003),
    so that multiplying by A(f)/dt gives a record with the target Fourier amplitude."""
    spec = np.fft.rfft(windowed_noise, axis=-1)
    rms = np.sqrt(np.mean(np.abs(spec) ** 2, axis=-1, keepdims=True))
    return spec / rms


def rvt_peak_estimate(freq_hz: np.ndarray, amp: np.ndarray, duration: float) -> float:
    """Random-vibration estimate of the peak of a motion with Fourier amplitude ``amp`` (m/s)
    lasting ``duration`` s: rms from Parseval, Cartwright & Longuet-Higgins-type peak factor.
    Used only to decide, before synthesis, whether a record would trigger."""
    df = freq_hz[1] - freq_hz[0]
    m0 = 2.0 * np.sum(amp**2) * df
    m2 = 2.0 * np.sum((2 * np.pi * freq_hz) ** 2 * amp**2) * df
    if m0 <= 0:
        return 0.0
    rms = np.sqrt(m0 / duration)
    n_extrema = max(2.0, 2.0 * np.sqrt(m2 / m0) / (2 * np.pi) * duration)
    peak_factor = np.sqrt(2.0 * np.log(n_extrema)) + 0.5772 / np.sqrt(2.0 * np.log(n_extrema))
    return float(rms * peak_factor)
