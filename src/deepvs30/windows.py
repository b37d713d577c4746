"""Model inputs from the prepared memory map: windows cut on the fly, normalised per channel.

The normaliser (per-channel mean and standard deviation of the windows, and the mean and
standard deviation of ln Vs30) is fitted on the training split only and stored with the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from deepvs30.segment import FeatureParams, SkipRecord, ln_hv_scalars, make_input


def _opt(value: object) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def window_of(waves: np.ndarray, rec: pd.Series, fs_hz: float, features: FeatureParams):
    """Model input of one prepared record (see :func:`deepvs30.segment.make_input`)."""
    record = waves[int(rec["row"]), :, : int(rec["n_samples"])]
    return make_input(
        record,
        fs_hz,
        features,
        _opt(rec["p_sample"]),
        _opt(rec["s_sample"]),
        int(rec["pga_sample"]),
        source=(_opt(rec.get("magnitude")), _opt(rec.get("hyp_distance_km"))),
    )


def usable_records(
    waves: np.ndarray, records: pd.DataFrame, fs_hz: float, features: FeatureParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Records this segmentation can use, and the others with their reasons (counted)."""
    keep, skipped = [], []
    for idx, rec in records.iterrows():
        try:
            window_of(waves, rec, fs_hz, features)
            keep.append(idx)
        except SkipRecord as exc:
            skipped.append({"record_id": rec["record_id"], "reason": str(exc)})
    return records.loc[keep], pd.DataFrame(skipped, columns=["record_id", "reason"])


@dataclass
class Normaliser:
    channel_mean: list[float]
    channel_std: list[float]
    scalar_mean: list[float]
    scalar_std: list[float]
    target_mean: float  # of ln Vs30 (m/s)
    target_std: float
    sigma_scale: float = 1.0  # calibration of the predicted sigma (real benchmark folds)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def fit(
        cls, waves: np.ndarray, records: pd.DataFrame, fs_hz: float, features: FeatureParams
    ) -> Normaliser:
        """Streaming per-channel moments over the training windows."""
        n_ch = features.in_channels
        total = np.zeros(n_ch)
        total_sq = np.zeros(n_ch)
        count = 0
        scalars = []
        for _, rec in records.iterrows():
            x, s = window_of(waves, rec, fs_hz, features)
            x64 = x.astype(np.float64)
            total += x64.sum(axis=1)
            total_sq += (x64**2).sum(axis=1)
            count += x.shape[1]
            scalars.append(s)
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
        if features.ps_channel:  # the P/S mask stays 0/1
            mean[3], std[3] = 0.0, 1.0
        s_arr = np.asarray(scalars, dtype=np.float64).reshape(len(records), -1)
        ln_vs30 = np.log(records["vs30_mps"].to_numpy(dtype=float))
        return cls(
            channel_mean=mean.tolist(),
            channel_std=std.tolist(),
            scalar_mean=s_arr.mean(axis=0).tolist() if s_arr.size else [],
            scalar_std=(s_arr.std(axis=0) + 1e-6).tolist() if s_arr.size else [],
            target_mean=float(ln_vs30.mean()),
            target_std=float(ln_vs30.std() + 1e-6),
        )

    def _arrays(self) -> tuple[np.ndarray, ...]:
        """float32 views of the statistics, built once (this runs for every window)."""
        cached = self.__dict__.get("_cache")
        if cached is None:
            cached = (
                np.asarray(self.channel_mean, dtype=np.float32)[:, None],
                np.asarray(self.channel_std, dtype=np.float32)[:, None],
                np.asarray(self.scalar_mean, dtype=np.float32),
                np.asarray(self.scalar_std, dtype=np.float32),
            )
            self.__dict__["_cache"] = cached
        return cached

    def inputs(self, x: np.ndarray, scalars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std, s_mean, s_std = self._arrays()
        x = (x - mean) / std
        if len(self.scalar_mean):
            scalars = (scalars - s_mean) / s_std
        return x.astype(np.float32), scalars.astype(np.float32)

    def target(self, vs30_mps: np.ndarray) -> np.ndarray:
        return ((np.log(vs30_mps) - self.target_mean) / self.target_std).astype(np.float32)

    def ln_vs30(self, z: np.ndarray, log_sigma_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardised outputs back to ln Vs30 (m/s) and its standard deviation."""
        sigma_ln = np.exp(log_sigma_z) * self.target_std * self.sigma_scale
        return z * self.target_std + self.target_mean, sigma_ln


class WindowDataset(torch.utils.data.Dataset):
    """(x, scalars, target) tensors of the given records, read from the memory map on demand."""

    def __init__(
        self,
        waves: np.ndarray,
        records: pd.DataFrame,
        fs_hz: float,
        features: FeatureParams,
        normaliser: Normaliser,
    ):
        self.waves = waves
        self.records = records.reset_index(drop=True)
        self.fs_hz = fs_hz
        self.features = features
        self.normaliser = normaliser
        self.targets = normaliser.target(self.records["vs30_mps"].to_numpy(dtype=float))
        # the columns a window needs, as plain arrays: a pandas row lookup per item cost more
        # than cutting the window itself (bench: training overhead vs a bare torch loop)
        self._row = self.records["row"].to_numpy(dtype=np.int64)
        self._n = self.records["n_samples"].to_numpy(dtype=np.int64)
        self._p = self.records["p_sample"].to_numpy(dtype=np.float64)
        self._s = self.records["s_sample"].to_numpy(dtype=np.float64)
        self._pga = self.records["pga_sample"].to_numpy(dtype=np.int64)
        self._source = np.column_stack([self._column("magnitude"), self._column("hyp_distance_km")])
        self._ln_hv: dict[
            int, np.ndarray
        ] = {}  # H/V scalars: one spectrum per record, not per epoch

    def __len__(self) -> int:
        return len(self.records)

    def _column(self, name: str) -> np.ndarray:
        """A float column of the records (NaN where absent: a dataset without it)."""
        if name not in self.records:
            return np.full(len(self.records), np.nan)
        return pd.to_numeric(self.records[name], errors="coerce").to_numpy(dtype=np.float64)

    def __getitem__(self, i: int):
        record = self.waves[self._row[i], :, : self._n[i]]
        if self.features.hv_bins and i not in self._ln_hv:
            self._ln_hv[i] = ln_hv_scalars(record, self.fs_hz, self.features, int(self._pga[i]))
        x, s = make_input(
            record,
            self.fs_hz,
            self.features,
            _finite(self._p[i]),
            _finite(self._s[i]),
            int(self._pga[i]),
            self._ln_hv.get(i),
            (_finite(self._source[i, 0]), _finite(self._source[i, 1])),
        )
        x, s = self.normaliser.inputs(x, s)
        return torch.from_numpy(x), torch.from_numpy(s), torch.tensor(self.targets[i])


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
