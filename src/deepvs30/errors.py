"""Error types. Every error names the file (or key) and the reason, so a user can act on it."""

from __future__ import annotations

from pathlib import Path


class DeepVs30Error(Exception):
    """Base class of the errors the CLI reports as one clear line and a non-zero exit."""


class ConfigError(DeepVs30Error):
    """A missing, unknown or ill-typed key in params.yaml."""


class DatasetFormatError(DeepVs30Error):
    """A folder that is not a canonical dataset (metadata.csv + waveforms.hdf5)."""


class ReaderError(DeepVs30Error):
    """A record file that cannot be read: corrupt, truncated, wrong format or units."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ValidationFailed(DeepVs30Error):
    """The dataset failed its Great Expectations suite."""


class LeakageError(DeepVs30Error):
    """Train/validation/test sets share a station (or a held-out cluster)."""
