"""A trained model with everything needed to use it: the one inference path.

A bundle holds the network weights (a state dict, loaded with ``weights_only=True``: no
arbitrary pickles) and a JSON config: model family and sizes, the preprocessing and feature
(segmentation) parameters, and the normaliser fitted on the training split. Evaluation,
``deepvs30 predict`` and the MLflow pyfunc all go through :meth:`ModelBundle.predict_records`
or :meth:`ModelBundle.predict_prepared`, so training and prediction cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from deepvs30.config import from_dict
from deepvs30.device import to_device
from deepvs30.preprocess import PreprocessParams, preprocess_record, rescale_sample
from deepvs30.segment import (
    FeatureParams,
    SkipRecord,
    hv_window_start,
    make_input,
    pga_sample,
    window_span,
)
from deepvs30.windows import Normaliser

WEIGHTS = "model.pt"
FALLBACK_DIR = "fallback"
CONFIG = "config.json"
# Bundles saved before min_record_s was stored: the served model assumed prepare's default
# min_record_s, 10 s (the hard-coded MIN_RECORD_S pyfunc had then), and still does for them.
LEGACY_MIN_RECORD_S = 10.0


@dataclass
class ModelBundle:
    model_name: str
    hparams: dict
    features: FeatureParams
    preprocess: PreprocessParams
    normaliser: Normaliser
    network: torch.nn.Module
    # what it was trained on (split.provenance): data and prepared versions, split, stations
    provenance: dict = field(default_factory=dict)
    # prepare.min_record_s of the training data: the model never saw shorter records
    min_record_s: float = field(kw_only=True)
    # answers the records this model skips for want of P/S arrivals or of magnitude and
    # distance (a model that needs neither); saved in the bundle's fallback/ folder
    fallback: ModelBundle | None = field(default=None, kw_only=True)

    @property
    def device(self) -> torch.device:
        """Where the network's weights are (the CPU for a network without any)."""
        first = next(self.network.parameters(), None)
        return first.device if first is not None else torch.device("cpu")

    def to(self, device: torch.device) -> ModelBundle:
        """Move the network to ``device`` (in place); returns the bundle."""
        self.network.to(device)
        if self.fallback is not None:
            self.fallback.to(device)
        return self

    @property
    def reads_waveform(self) -> bool:
        """Whether the network reads the waveform window (hv_mlp reads only the scalars; an
        ensemble reads it if one of its members does)."""
        from deepvs30.models import ENSEMBLE, WAVEFORM_MODELS

        if self.model_name == ENSEMBLE:
            return any(m["model_name"] in WAVEFORM_MODELS for m in self.hparams["members"])
        return self.model_name in WAVEFORM_MODELS

    @property
    def fs_hz(self) -> float:
        return self.preprocess.target_fs_hz

    @staticmethod
    def build_network(
        model_name: str, hparams: dict, features: FeatureParams, fs_hz: float
    ) -> torch.nn.Module:
        from deepvs30.models import build_model

        return build_model(
            model_name,
            in_channels=features.in_channels,
            n_samples=features.n_samples(fs_hz),
            n_scalars=features.n_scalars,
            representation=features.representation,
            **hparams,
        )

    def config(self) -> dict:
        return {
            "model_name": self.model_name,
            "hparams": self.hparams,
            "features": self.features.to_dict(),
            "preprocess": self.preprocess.to_dict(),
            "min_record_s": self.min_record_s,
            "normaliser": self.normaliser.to_dict(),
            "provenance": self.provenance,
        }

    def save(self, out_dir: str | Path) -> Path:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        # CPU tensors: the bundle loads anywhere, whatever device trained it
        torch.save({k: v.cpu() for k, v in self.network.state_dict().items()}, out_dir / WEIGHTS)
        (out_dir / CONFIG).write_text(json.dumps(self.config(), indent=1))
        if self.fallback is not None:
            self.fallback.save(out_dir / FALLBACK_DIR)
        return out_dir

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelBundle:
        model_dir = Path(model_dir)
        config = json.loads((model_dir / CONFIG).read_text())
        features = from_dict(config["features"], FeatureParams, f"{model_dir / CONFIG}: features")
        preprocess = from_dict(
            config["preprocess"], PreprocessParams, f"{model_dir / CONFIG}: preprocess"
        )
        normaliser = Normaliser(**config["normaliser"])
        network = cls.build_network(
            config["model_name"], config["hparams"], features, preprocess.target_fs_hz
        )
        state = torch.load(model_dir / WEIGHTS, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
        network.eval()
        return cls(
            config["model_name"],
            config["hparams"],
            features,
            preprocess,
            normaliser,
            network,
            config.get("provenance") or {},
            min_record_s=float(config.get("min_record_s", LEGACY_MIN_RECORD_S)),
            fallback=cls.load(model_dir / FALLBACK_DIR)
            if (model_dir / FALLBACK_DIR / CONFIG).is_file()
            else None,
        )

    @torch.no_grad()
    def predict_inputs(
        self, x: np.ndarray, scalars: np.ndarray, batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised network inputs (B, C, T), (B, F) → ln Vs30 (m/s) and its std (ln units)."""
        self.network.eval()
        device = self.device
        outputs = []
        for start in range(0, len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size]))
            sb = torch.from_numpy(np.ascontiguousarray(scalars[start : start + batch_size]))
            xb, sb = to_device((xb, sb), device)
            outputs.append(self.network(xb, sb if sb.shape[1] else None).cpu().numpy())
        out = np.concatenate(outputs) if outputs else np.zeros((0, 2), np.float32)
        return self.normaliser.ln_vs30(out[:, 0].astype(np.float64), out[:, 1].astype(np.float64))

    def input_of(
        self,
        record: np.ndarray,
        p_sample: float | None,
        s_sample: float | None,
        pga_at: int | None = None,
        source: tuple[float | None, float | None] = (None, None),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Normalised model input of one preprocessed record at the common rate; ``source``:
        its (magnitude, hypocentral distance in km), read by ``features.gmm_scalars``."""
        x, s = make_input(
            record, self.fs_hz, self.features, p_sample, s_sample, pga_at, source=source
        )
        return self.normaliser.inputs(x, s)

    def predict_records(self, records: list[dict]) -> list[dict]:
        """Raw records → predictions. Each record: ``waveform_mps2`` (3, n) ZNE in m/s²,
        ``sampling_rate_hz``, optional ``p_arrival_s``/``s_arrival_s`` from the record start,
        ``magnitude`` and ``hyp_distance_km``.
        Returns per record ``ln_vs30``, ``sigma_ln`` or ``skipped`` with the reason (the
        served model, :func:`deepvs30.pyfunc.predict_frame`, hands some to :attr:`fallback`)."""
        inputs, slots, results = [], [], []
        for rec in records:
            try:
                inputs.append(self._raw_input(rec))
                slots.append(len(results))
                results.append({})
            except SkipRecord as exc:
                results.append({"skipped": str(exc)})
        if inputs:
            x = np.stack([i[0] for i in inputs])
            s = np.stack([i[1] for i in inputs])
            ln_vs30, sigma_ln = self.predict_inputs(x, s)
            for slot, mu, sd in zip(slots, ln_vs30, sigma_ln, strict=True):
                results[slot] = {"ln_vs30": float(mu), "sigma_ln": float(sd)}
        return results

    def seen_window(self, rec: dict) -> SeenWindow:
        """What the model sees of one raw record (a record of :meth:`predict_records`): the
        preprocessed record, where its window lies, the window and scalars before
        normalisation and the arrivals, by the same calls as the prediction.
        :class:`SkipRecord` as there."""
        record, p_sample, s_sample = self._preprocessed(rec)
        source = (rec.get("magnitude"), rec.get("hyp_distance_km"))
        x, scalars = make_input(
            record, self.fs_hz, self.features, p_sample, s_sample, source=source
        )
        start, _ = window_span(record, self.fs_hz, self.features, p_sample, s_sample)
        hv_span = None
        if self.features.hv_bins:
            from deepvs30.hvsr import window_bounds

            hv_start = hv_window_start(self.fs_hz, self.features, pga_sample(record))
            hv_span = window_bounds(
                record.shape[1], self.fs_hz, hv_start, self.features.hv_window_s
            )
        return SeenWindow(record, self.fs_hz, start, x, scalars, p_sample, s_sample, hv_span)

    def _raw_input(self, rec: dict) -> tuple[np.ndarray, np.ndarray]:
        source = (rec.get("magnitude"), rec.get("hyp_distance_km"))
        return self.input_of(*self._preprocessed(rec), source=source)

    def _preprocessed(self, rec: dict) -> tuple[np.ndarray, float | None, float | None]:
        """The preprocessed record at the common rate and its P, S samples there."""
        fs_in_hz = float(rec["sampling_rate_hz"])
        waveform = np.asarray(rec["waveform_mps2"], dtype=np.float64)
        if waveform.ndim != 2 or waveform.shape[0] != 3:
            raise SkipRecord(f"waveform shape {waveform.shape}, expected (3, n) ZNE")
        if not np.all(np.isfinite(waveform)):
            raise SkipRecord("non-finite samples")
        record = preprocess_record(waveform, fs_in_hz, self.preprocess)
        p_sample = _seconds_to_sample(rec.get("p_arrival_s"), self.fs_hz)
        s_sample = _seconds_to_sample(rec.get("s_arrival_s"), self.fs_hz)
        return record, p_sample, s_sample


def ensemble(members: list[ModelBundle]) -> ModelBundle:
    """One bundle averaging ``members`` in ln Vs30 (:mod:`deepvs30.models.ensemble`). They
    must read the same inputs (features, preprocessing, minimum record length); each keeps
    its own normaliser inside the ensemble network, so the bundle's normaliser is the
    identity. Its provenance is the first member's, with every member's stations."""
    from deepvs30.errors import ConfigError
    from deepvs30.models import ENSEMBLE

    first = members[0]
    for other in members[1:]:
        if (other.features, other.preprocess, other.min_record_s) != (
            first.features, first.preprocess, first.min_record_s
        ):  # fmt: skip
            raise ConfigError("ensemble: members read different inputs (features, preprocess "
                              "or min_record_s differ)")  # fmt: skip
    hparams = {"members": [{"model_name": m.model_name, "hparams": m.hparams,
                            "normaliser": m.normaliser.to_dict()} for m in members]}  # fmt: skip
    network = ModelBundle.build_network(ENSEMBLE, hparams, first.features, first.fs_hz)
    for net, member in zip(network.members, members, strict=True):
        net.load_state_dict(member.network.state_dict())
    network.eval()
    n_channels, n_scalars = first.features.in_channels, first.features.n_scalars
    identity = Normaliser([0.0] * n_channels, [1.0] * n_channels, [0.0] * n_scalars,
                          [1.0] * n_scalars, target_mean=0.0, target_std=1.0)  # fmt: skip
    provenance = dict(first.provenance)
    for key in ("train_stations", "val_stations", "inherited_stations"):
        provenance[key] = sorted(set().union(*(m.provenance.get(key, []) for m in members)))
    return ModelBundle(ENSEMBLE, hparams, first.features, first.preprocess, identity, network,
                       provenance, min_record_s=first.min_record_s)  # fmt: skip


@dataclass(frozen=True)
class SeenWindow:
    """One record as the model sees it (:meth:`ModelBundle.seen_window`)."""

    record_mps2: np.ndarray  # preprocessed (3, n) ZNE at fs_hz
    fs_hz: float
    start_sample: int  # first sample of the model window in the record (< 0: zero-padded)
    x: np.ndarray  # the window before normalisation (in_channels, n_window); x[3]: P/S mask
    scalars: np.ndarray  # the scalar inputs before normalisation (n_scalars,)
    p_sample: float | None  # arrivals at fs_hz from the record start, as the model got them
    s_sample: float | None
    hv_span: slice | None  # the samples whose ln H/V the model reads (features.hv_bins > 0)


def _seconds_to_sample(seconds: float | None, fs_hz: float) -> float | None:
    if seconds is None:
        return None
    return rescale_sample(float(seconds) * fs_hz, fs_hz, fs_hz)
