"""Station-disjoint splits. Vs30 is a property of the station, so a station's records never
straddle train, validation and test (a record-level random split would leak the label).

Two splits are written, one file, reused by every run so results compare:

- ``split``: stations drawn at random, stratified by ln Vs30 so each part spans the range;
- ``split_cluster``: a whole regional cluster held out as test (clusters given by the dataset
  or from k-means on station coordinates); validation drawn from the other clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from deepvs30.dataset import station_key
from deepvs30.errors import LeakageError

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitParams:
    seed: int = 42
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    n_clusters: int = 5  # k-means clusters when the dataset does not give station_cluster
    holdout_cluster: int | None = None  # None: the cluster closest to 15% of the stations


def station_table(metadata: pd.DataFrame, n_clusters: int, seed: int) -> pd.DataFrame:
    """One row per station: coordinates, Vs30 (m/s), number of records, regional cluster."""
    meta = metadata.assign(station=station_key(metadata))
    stations = meta.groupby("station", sort=True).agg(
        latitude_deg=("station_latitude_deg", "first"),
        longitude_deg=("station_longitude_deg", "first"),
        vs30_mps=("station_vs30_mps", "first"),
        n_records=("station_code", "size"),
    )
    if "station_cluster" in meta and meta["station_cluster"].notna().all():
        stations["cluster"] = meta.groupby("station")["station_cluster"].first().astype(int)
    else:
        stations["cluster"] = kmeans_clusters(stations, n_clusters, seed)
    return stations.reset_index()


def kmeans_clusters(stations: pd.DataFrame, n_clusters: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    coords = stations[["latitude_deg", "longitude_deg"]].to_numpy(dtype=float)
    k = max(1, min(n_clusters, len(stations)))
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(coords)


def random_station_split(stations: pd.DataFrame, params: SplitParams) -> pd.Series:
    """train/val/test per station, stratified by ln Vs30 (strata of ~1/test_fraction stations)."""
    rng = np.random.default_rng(params.seed)
    order = np.argsort(np.log(stations["vs30_mps"].to_numpy(dtype=float)), kind="stable")
    labels = np.empty(len(stations), dtype=object)
    stratum = max(3, int(round(1 / min(params.val_fraction, params.test_fraction))))
    for start in range(0, len(order), stratum):
        idx = order[start : start + stratum]
        labels[idx] = _assign(rng, len(idx), params.val_fraction, params.test_fraction)
    return pd.Series(labels, index=stations.index, name="split")


def _assign(
    rng: np.random.Generator, n: int, val_fraction: float, test_fraction: float
) -> np.ndarray:
    """Labels for one stratum; fractional expected counts are resolved at random."""
    n_test = int(np.floor(n * test_fraction + rng.random()))
    n_val = int(np.floor(n * val_fraction + rng.random()))
    n_test, n_val = min(n_test, n), min(n_val, n - min(n_test, n))
    labels = np.array(["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val))
    return rng.permutation(labels)


def cluster_holdout_split(stations: pd.DataFrame, params: SplitParams) -> pd.Series:
    """The held-out cluster is test; validation is drawn from the remaining clusters."""
    holdout = params.holdout_cluster
    if holdout is None:
        share = stations["cluster"].value_counts(normalize=True)
        holdout = int((share - params.test_fraction).abs().idxmin())
    labels = pd.Series("train", index=stations.index, name="split_cluster", dtype=object)
    in_holdout = stations["cluster"] == holdout
    labels[in_holdout] = "test"
    rng = np.random.default_rng(params.seed + 1)
    rest = np.flatnonzero(~in_holdout.to_numpy())
    n_val = int(round(len(rest) * params.val_fraction))
    labels.iloc[rng.choice(rest, size=n_val, replace=False)] = "val"
    return labels


def make_splits(metadata: pd.DataFrame, params: SplitParams) -> pd.DataFrame:
    """The split file: one row per station with both splits."""
    stations = station_table(metadata, params.n_clusters, params.seed)
    stations["split"] = random_station_split(stations, params)
    stations["split_cluster"] = cluster_holdout_split(stations, params)
    for column in ("split", "split_cluster"):
        check_station_disjoint(stations, column)
    return stations


def check_station_disjoint(stations: pd.DataFrame, column: str) -> None:
    """Fail loudly if a station appears in more than one part of a split."""
    parts = stations.groupby("station")[column].nunique()
    shared = parts[parts > 1].index.tolist()
    if shared:
        raise LeakageError(f"split '{column}': stations in several parts: {shared[:10]}")
    if column == "split_cluster":
        test_clusters = set(stations.loc[stations[column] == "test", "cluster"])
        train_clusters = set(stations.loc[stations[column] != "test", "cluster"])
        if test_clusters & train_clusters:
            raise LeakageError(
                f"split '{column}': clusters {sorted(test_clusters & train_clusters)} in test "
                "and train/val"
            )


def check_records_disjoint(records: pd.DataFrame, column: str) -> None:
    """Record-level guard used by evaluate: no station in both the test part and training."""
    by_station = records.groupby("station")[column].nunique()
    leaking = by_station[by_station > 1].index.tolist()
    if leaking:
        raise LeakageError(
            f"records of stations {leaking[:10]} fall in several parts of '{column}'"
        )
