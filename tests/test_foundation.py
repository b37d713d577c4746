"""Config, canonical dataset, CLI errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

from deepvs30.cli import main
from deepvs30.config import load_params, section
from deepvs30.dataset import REQUIRED_COLUMNS, CanonicalDataset, parse_location, write_dataset
from deepvs30.errors import ConfigError, DatasetFormatError


@dataclass(frozen=True)
class Inner:
    rate_hz: float = 100.0


@dataclass(frozen=True)
class Outer:
    name: str
    epochs: int = 3
    inner: Inner = field(default_factory=Inner)
    maybe: int | None = None


def _params(tmp_path, text: str) -> dict:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def test_section_builds_typed_values(tmp_path):
    params = _params(tmp_path, "s:\n  name: a\n  epochs: 5\n  inner: {rate_hz: 50}\n")
    got = section(params, "s", Outer)
    assert got == Outer(name="a", epochs=5, inner=Inner(rate_hz=50.0), maybe=None)
    assert isinstance(got.inner.rate_hz, float)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s:\n  epochs: 5\n", "missing key 'name'"),
        ("s:\n  name: a\n  epochz: 5\n", "unknown key(s) ['epochz']"),
        ("s:\n  name: a\n  epochs: five\n", "s.epochs: expected an integer"),
        ("s:\n  name: a\n  inner: {rate_hz: fast}\n", "s.inner.rate_hz: expected a number"),
        ("t: {}\n", "missing section 's'"),
    ],
)
def test_section_errors_name_file_and_key(tmp_path, text, message):
    params = _params(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        section(params, "s", Outer)
    assert message in str(err.value)
    assert "params.yaml" in str(err.value)


def test_corrupt_params_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        _params(tmp_path, "a: [1, 2\n")


def test_canonical_round_trip_through_seisbench(tiny_dataset):
    import seisbench.data as sbd

    ours = CanonicalDataset(tiny_dataset)
    theirs = sbd.WaveformDataset(
        tiny_dataset, component_order="ZNE", dimension_order="NCW", cache=None
    )
    assert len(ours) == len(theirs) == 144
    for i in (0, 37, 143):
        np.testing.assert_allclose(ours.waveform(i), theirs.get_waveforms(i), rtol=0, atol=0)
    assert set(REQUIRED_COLUMNS) <= set(ours.metadata.columns)
    loc = parse_location(ours.metadata["trace_name"].iat[5])
    assert loc is not None and loc.n_channels == 3 and loc.n_samples == 4000


def test_write_is_atomic_on_failure(tmp_path):
    meta = {c: 0 for c in REQUIRED_COLUMNS}
    good = (dict(meta, trace_name="a"), np.zeros((3, 100)))
    bad = (dict(meta, trace_name="b"), np.zeros((2, 100)))
    with pytest.raises(DatasetFormatError, match=r"record b: waveform shape \(2, 100\)"):
        write_dataset(tmp_path / "out", [good, bad])
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_dataset_folder_errors(tmp_path):
    with pytest.raises(DatasetFormatError, match="dataset folder not found"):
        CanonicalDataset(tmp_path / "nope")
    (tmp_path / "d").mkdir()
    pd.DataFrame({"trace_name": ["x"]}).to_csv(tmp_path / "d" / "metadata.csv", index=False)
    with pytest.raises(DatasetFormatError, match="waveforms.hdf5: missing"):
        CanonicalDataset(tmp_path / "d")
    (tmp_path / "d" / "waveforms.hdf5").write_bytes(b"not hdf5")
    with pytest.raises(DatasetFormatError, match="missing columns"):
        CanonicalDataset(tmp_path / "d")


def test_cli_reports_config_error_and_exit_code(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text("data: {path: data}\nprepare: {outt: x}\n")
    code = main(["--params", str(params), "prepare"])
    assert code == 2
    err = capsys.readouterr().err
    assert "deepvs30 prepare: error:" in err and "unknown key(s) ['outt']" in err
