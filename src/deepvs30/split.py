"""Station-disjoint splits. Vs30 is a property of the station, so a station's records never
straddle train, validation and test (a record-level random split would leak the label).

Two splits are written, one file, reused by every run so results compare:

- ``split``: stations drawn at random, stratified by ln Vs30 so each part spans the range;
- ``split_cluster``: a whole regional cluster held out as test (clusters given by the dataset
  or from k-means on station coordinates); validation drawn from the other clusters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deepvs30.dataset import station_key
from deepvs30.errors import ConfigError, LeakageError

log = logging.getLogger(__name__)

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
    return stations


# --- what a model was trained on, and the check that it is not scored on it ----------------


def select_split(
    records: pd.DataFrame, split_column: str, station_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Records of each part; optionally a seeded subset of the training stations."""
    if split_column not in records:
        raise ConfigError(f"train.split_column: {split_column!r} is not a split in records.csv")
    parts = {name: records[records[split_column] == name] for name in SPLIT_NAMES}
    if station_fraction < 1.0:
        stations = np.sort(parts["train"]["station"].unique())
        rng = np.random.default_rng(seed)
        n_keep = max(2, int(round(station_fraction * len(stations))))
        keep = set(rng.choice(stations, size=min(n_keep, len(stations)), replace=False))
        parts["train"] = parts["train"][parts["train"]["station"].isin(keep)]
    return parts


def prepared_hash(prepared_dir: str | Path) -> str:
    """Content hash of a prepared folder's record and station tables (splits included)."""
    digest = hashlib.sha256()
    for name in ("records.csv", "stations.csv"):
        path = Path(prepared_dir) / name
        if path.is_file():
            digest.update(path.read_bytes())
    return "sha256:" + digest.hexdigest()[:16]


def provenance(
    prepared_dir: str | Path,
    parts: dict[str, pd.DataFrame],
    split_column: str,
    inherited: dict | None = None,
) -> dict:
    """What a model saw: the data and prepared versions, the split, and its training and
    validation stations; ``inherited`` is the provenance of the model it was fine-tuned from
    (its stations were seen too)."""
    from deepvs30.tracking import data_version

    prepared_dir = Path(prepared_dir)
    summary_file = prepared_dir / "prepare.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    data_dir = summary.get("data")
    return {
        "data_version": data_version(data_dir) if data_dir else "unknown",
        "prepared": str(prepared_dir),
        "prepared_hash": prepared_hash(prepared_dir),
        "split_column": split_column,
        "split_seed": summary.get("params", {}).get("split", {}).get("seed"),
        "train_stations": sorted(map(str, parts["train"]["station"].unique())),
        "val_stations": sorted(map(str, parts["val"]["station"].unique())),
        "inherited_stations": sorted(seen_stations(inherited)) if inherited else [],
    }


def seen_stations(prov: dict, include_val: bool = True) -> set[str]:
    """Stations whose records a model was trained (or early-stopped, or pre-trained) on."""
    keys = ["train_stations", "inherited_stations"] + (["val_stations"] if include_val else [])
    return set().union(*(set(prov.get(k, [])) for k in keys))


def check_unseen(
    prov: dict | None, stations: Iterable[str], where: str, include_val: bool = True
) -> None:
    """Refuse to score a model on stations it has seen: LeakageError naming them."""
    if not prov:
        log.warning("%s: the model records no provenance (trained before it was kept); "
                    "its training stations cannot be checked", where)  # fmt: skip
        return
    shared = sorted(seen_stations(prov, include_val) & set(map(str, stations)))
    if shared:
        raise LeakageError(
            f"{where}: the model was trained on {len(shared)} of the stations it would be "
            f"scored on ({', '.join(shared[:10])}{', ...' if len(shared) > 10 else ''}); "
            f"it was trained on {prov.get('prepared')} (split {prov.get('split_column')}, "
            f"seed {prov.get('split_seed')}, data {prov.get('data_version')})"
        )


# --- derived splits (experiments, real benchmark folds) ---------------------------------


def derive_split(prepared_dir: Path, out_dir: Path, split: Callable[[pd.DataFrame], pd.Series]):
    """A prepared folder sharing the waveforms of ``prepared_dir`` whose ``split`` column is
    ``split(records)`` (train/val/test; anything else is unused)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records = pd.read_csv(prepared_dir / "records.csv")
    records["split"] = split(records).to_numpy()
    records.to_csv(out_dir / "records.csv", index=False)
    for name in ("prepare.json", "stations.csv"):
        shutil.copy(prepared_dir / name, out_dir / name)
    link = out_dir / "waveforms.npy"
    link.unlink(missing_ok=True)  # a cached folder may point at an older corpus
    link.symlink_to((prepared_dir / "waveforms.npy").resolve())
    return out_dir


def station_split(
    records: pd.DataFrame, stations: dict[str, list], default: str = "none"
) -> pd.Series:
    """Per record, the part whose station list holds its station (else ``default``)."""
    part = {station: name for name, members in stations.items() for station in members}
    return records["station"].map(part).fillna(default)
