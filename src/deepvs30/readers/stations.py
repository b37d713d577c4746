"""Station tables that label records with Vs30 by station code when the files do not carry it.

A station table has columns ``network, station, lat, lon, vs30_mps, vs30_method`` (the
``--stations CSV`` format). Built-in loaders turn the shared metadata tables into that shape:

- AFAD station list (``stations.xlsx``: Network, Code, Latitude, Longitude, Vs30) — method not
  stated → "unknown";
- NGA-West2 flatfile (``NGA-West2_flatfile.csv``), K-NET/KiK-net station codes only (network
  ``BO``; codes like AOM001, NGNH31), one row per station — this copy has no measured/inferred
  flag → "unknown". Other NGA-West2 stations are not joined by code alone (codes collide across
  networks; the INDEX labels them by code *and* coordinates).

Lookup is by (network, station), then by station alone when exactly one table row has that code.

The built-in tables are parsed once: the parsed table is kept as Parquet in the user cache
(:func:`cache_dir`), keyed by the sha256 of the source file and of this module, so an edited
table or an edited parser is parsed again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from deepvs30.errors import ReaderError

log = logging.getLogger(__name__)

STATION_COLUMNS = ("network", "station", "lat", "lon", "vs30_mps", "vs30_method")
_METHODS = {"measured", "proxy", "unknown"}
_JAPAN_CODE = re.compile(r"^[A-Z]{3}\d{3}$|^[A-Z]{4}\d{2}$")


@dataclass(frozen=True)
class StationInfo:
    network: str
    station: str
    lat: float | None
    lon: float | None
    vs30_mps: float
    vs30_method: str
    table: str


def _clean(table: pd.DataFrame, source: str) -> pd.DataFrame:
    table = table.copy()
    table["network"] = table["network"].fillna("").astype(str).str.strip()
    table["station"] = table["station"].astype(str).str.strip()
    table["vs30_mps"] = pd.to_numeric(table["vs30_mps"], errors="coerce")
    table["vs30_method"] = (
        table["vs30_method"].fillna("unknown").astype(str).str.strip().str.lower()
    )
    table.loc[~table["vs30_method"].isin(_METHODS), "vs30_method"] = "unknown"
    table = table[table["vs30_mps"].notna() & (table["vs30_mps"] > 0)]
    table["table"] = source
    return table.loc[:, [*STATION_COLUMNS, "table"]]


def load_station_csv(path: str | Path) -> pd.DataFrame:
    """A ``--stations`` CSV; ReaderError naming the missing columns."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"network": str, "station": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReaderError(path, f"unreadable station table ({exc})") from exc
    missing = [c for c in STATION_COLUMNS if c not in table.columns]
    if missing:
        raise ReaderError(
            path, f"station table lacks column(s) {missing}; needs {list(STATION_COLUMNS)}"
        )
    return _clean(table, str(path))


def _afad_code(value: object) -> str:
    text = str(value).strip()
    return f"{int(float(text)):04d}" if re.fullmatch(r"\d+(\.0)?", text) else text


def load_afad_station_list(path: str | Path) -> pd.DataFrame:
    """The AFAD station list as a station table (parsed once, then read from the cache)."""
    return cached_table(Path(path), _parse_afad_station_list)


def _parse_afad_station_list(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_excel(path, dtype={"Code": str})
    except Exception as exc:  # openpyxl raises assorted types on bad files
        raise ReaderError(path, f"unreadable AFAD station list ({exc})") from exc
    missing = [c for c in ("Network", "Code", "Latitude", "Longitude", "Vs30") if c not in raw]
    if missing:
        raise ReaderError(path, f"AFAD station list lacks column(s) {missing}")
    table = pd.DataFrame(
        {
            "network": raw["Network"],
            "station": raw["Code"].map(_afad_code),
            "lat": raw["Latitude"],
            "lon": raw["Longitude"],
            "vs30_mps": raw["Vs30"],
            "vs30_method": "unknown",
        }
    )
    return _clean(table, "AFAD station list")


def load_ngaw2_japan(path: str | Path) -> pd.DataFrame:
    """NGA-West2 K-NET/KiK-net stations as a station table (parsed once, then cached)."""
    return cached_table(Path(path), _parse_ngaw2_japan)


def _parse_ngaw2_japan(path: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, low_memory=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ReaderError(path, f"unreadable NGA-West2 flatfile ({exc})") from exc
    needed = ("STATION", "STATION_LAT", "STATION_LON", "VS30(m/s)")
    missing = [c for c in needed if c not in raw]
    if missing:
        raise ReaderError(path, f"NGA-West2 flatfile lacks column(s) {missing}")
    raw = raw[raw["STATION"].astype(str).str.match(_JAPAN_CODE)]
    raw = raw.drop_duplicates("STATION")
    table = pd.DataFrame(
        {
            "network": "BO",
            "station": raw["STATION"].astype(str),
            "lat": raw["STATION_LAT"],
            "lon": raw["STATION_LON"],
            "vs30_mps": raw["VS30(m/s)"],
            "vs30_method": "unknown",
        }
    )
    return _clean(table, "NGA-West2 flatfile (K-NET/KiK-net codes)")


# --- parsed-table cache ------------------------------------------------------------------


def cache_dir() -> Path:
    """``$DEEPVS30_CACHE``, else ``$XDG_CACHE_HOME/deepvs30``, else ``~/.cache/deepvs30``."""
    if os.environ.get("DEEPVS30_CACHE"):
        return Path(os.environ["DEEPVS30_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deepvs30"


def cache_key(path: Path, parser: Callable[[Path], pd.DataFrame]) -> str:
    """sha256 of the parser's name, this module's source and the file's bytes."""
    digest = hashlib.sha256(parser.__name__.encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(path.read_bytes())
    return digest.hexdigest()


def cached_table(path: Path, parser: Callable[[Path], pd.DataFrame]) -> pd.DataFrame:
    """``parser(path)``, read from the cache when this file was parsed before. A file that
    cannot be read goes straight to the parser (its ReaderError); a cache that cannot be read
    or written is parsed around, never an error."""
    try:
        target = cache_dir() / "stations" / f"{cache_key(path, parser)}.parquet"
    except OSError:
        return parser(path)
    if target.is_file():
        try:
            return pd.read_parquet(target)
        except Exception as exc:  # a truncated or foreign file: parse again
            log.debug("station cache %s unreadable (%s): parsing %s", target, exc, path)
    table = parser(path)
    _write_cache(table, target)
    return table


def _write_cache(table: pd.DataFrame, target: Path) -> None:
    """Write through a temporary name, so a reader never sees half a file."""
    partial = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(partial)
        partial.replace(target)
    except Exception as exc:  # read-only home, full disk: the parsed table still serves
        log.debug("station cache %s not written: %s", target, exc)
        partial.unlink(missing_ok=True)


class StationTable:
    """Vs30 by station: first table given wins where several list the same station."""

    def __init__(self, tables: list[pd.DataFrame] | None = None):
        frames = [t for t in (tables or []) if len(t)]
        self.table = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=[*STATION_COLUMNS, "table"])
        )
        self._by_key: dict[tuple[str, str], StationInfo] = {}
        self._by_code: dict[str, list[StationInfo]] = {}
        # whole columns as Python lists: itertuples over Arrow-backed string columns took
        # 54 ms of every predict for the 2,291 built-in stations; the whole table now takes 11 ms
        columns = [self.table[c].tolist() for c in (*STATION_COLUMNS, "table")]
        for network, station, lat, lon, vs30_mps, method, source in zip(*columns, strict=True):
            info = StationInfo(
                network, station, _num(lat), _num(lon), float(vs30_mps), method, source
            )
            self._by_key.setdefault((info.network, info.station), info)
            self._by_code.setdefault(info.station, []).append(info)

    def __len__(self) -> int:
        return len(self.table)

    def lookup(self, network: str, station: str) -> StationInfo | None:
        info = self._by_key.get((network, station))
        if info is not None:
            return info
        candidates = self._by_code.get(station, [])
        return candidates[0] if len({(c.network, c.vs30_mps) for c in candidates}) == 1 else None


def _num(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None
