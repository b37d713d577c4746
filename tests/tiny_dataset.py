"""A tiny canonical dataset for fast pipeline tests (not the product's synthetic corpus).

Each station has a soil layer over rock: its horizontals pass through a damped resonance at
f0 = Vs30/(4H) with a gain that grows as Vs30 falls; the vertical does not. That is enough
physics for the H/V baseline and a small network to find a signal in a few epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import signal

from deepvs30.dataset import write_dataset

FS_HZ = 100.0


def _resonance(x: np.ndarray, f0_hz: float, gain: float) -> np.ndarray:
    b, a = signal.iirpeak(f0_hz, Q=4.0, fs=FS_HZ)
    return x + (gain - 1.0) * signal.lfilter(b, a, x)


def make_tiny_dataset(
    out_dir: Path, n_stations: int = 24, n_events: int = 6, seed: int = 0, duration_s: float = 40
) -> Path:
    rng = np.random.default_rng(seed)
    n = int(duration_s * FS_HZ)
    t = np.arange(n) / FS_HZ
    stations = []
    for k in range(n_stations):
        vs30 = float(np.exp(rng.uniform(np.log(180), np.log(1200))))
        depth_m = rng.uniform(10, 40)
        stations.append(
            {
                "code": f"T{k:03d}",
                "vs30": round(vs30, 1),
                "f0": vs30 / (4 * depth_m),
                "lat": 38 + rng.normal(0, 0.5) + (k % 3),
                "lon": 30 + rng.normal(0, 0.5) + (k % 3),
            }
        )
    records = []
    for e in range(n_events):
        mag = rng.uniform(4, 6)
        for st in stations:
            dist_km = rng.uniform(10, 80)
            tp, ts = 5 + dist_km / 6.0, 5 + dist_km / 3.5
            env_p = np.where(t > tp, np.exp(-(t - tp) / 3), 0) * 0.2
            env_s = np.where(t > ts, np.exp(-(t - ts) / 6), 0)
            amp = 10 ** (0.5 * mag) / dist_km * 1e-3
            noise = rng.standard_normal((3, n))
            z = amp * (env_p + 0.3 * env_s) * noise[0]
            gain = float(np.clip(3.0 * (760 / st["vs30"]) ** 0.6, 1.1, 8.0))
            f0 = min(st["f0"], 20.0)
            h = [_resonance(amp * (env_s + 0.1 * env_p) * noise[i], f0, gain) for i in (1, 2)]
            wave = np.stack([z, *h]) + 1e-5 * rng.standard_normal((3, n))
            records.append(
                (
                    {
                        "trace_name": f"TN.{st['code']}.ev{e:02d}",
                        "station_network_code": "TN",
                        "station_code": st["code"],
                        "station_latitude_deg": st["lat"],
                        "station_longitude_deg": st["lon"],
                        "station_vs30_mps": st["vs30"],
                        "station_vs30_method": "synthetic",
                        "source_id": f"ev{e:02d}",
                        "source_magnitude": round(mag, 2),
                        "source_latitude_deg": 38.5,
                        "source_longitude_deg": 30.5,
                        "source_depth_km": 10.0,
                        "path_hyp_distance_km": round(dist_km, 2),
                        "trace_sampling_rate_hz": FS_HZ,
                        "trace_p_arrival_sample": round(tp * FS_HZ),
                        "trace_s_arrival_sample": round(ts * FS_HZ),
                        "trace_start_time": f"2020-01-{e + 1:02d}T00:00:00",
                        "trace_p_status": "synthetic",
                    },
                    wave,
                )
            )
    return write_dataset(out_dir, records, total=len(records))
