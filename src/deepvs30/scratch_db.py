"""Scratch SQLite files: what a long step keeps on disk instead of in memory (the ingest's
file listing and merge index, the dataset writer's metadata spool). Each is made anew by its
run and needs no durability: a killed run's file is remade, never read."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def scratch_db(path: Path, schema: str) -> sqlite3.Connection:
    """A new SQLite file at ``path`` (any old one removed) with ``schema`` made, without a
    journal or syncs."""
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(f"PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; {schema}")
    return db
