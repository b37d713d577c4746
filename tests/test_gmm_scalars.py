"""features.gmm_scalars: magnitude, ln hypocentral distance and ln PGA as scalar inputs, the same
numbers on the training path (prepared records) and the served path (raw records), and records
without magnitude or distance skipped with the reason, then answered by a fallback model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from deepvs30.segment import (
    MISSING_SOURCE,
    FeatureParams,
    SkipRecord,
    ln_hv_scalars,
    make_input,
)

FS_HZ = 100.0
GMM = FeatureParams(segmentation="pga_centred", ps_channel=False, window_s=2.0, gmm_scalars=True)


def spike_record(n_samples: int = 1000, at: int = 400) -> np.ndarray:
    """Noise with one horizontal peak of (3, 4) m/s² at ``at``: PGA 5 m/s²."""
    record = 1e-3 * np.random.default_rng(0).standard_normal((3, n_samples))
    record[1, at], record[2, at] = 3.0, 4.0
    return record


def known_and_unknown_magnitude(seed: int) -> pd.DataFrame:
    """Two raw records of one burst, 30 km away: one with magnitude 5, one without."""
    rng = np.random.default_rng(seed)
    t = np.arange(3000) / FS_HZ
    waves = {c: 0.01 * np.where(t > 5, np.exp(-(t - 5) / 4), 0) * rng.standard_normal(3000)
             for c in "zne"}  # fmt: skip
    base = {"station": "XX.TEST", "sampling_rate_hz": FS_HZ, "hyp_distance_km": 30.0, **waves}
    return pd.DataFrame([{**base, "record_id": "known", "magnitude": 5.0},
                         {**base, "record_id": "unknown", "magnitude": None}])  # fmt: skip


def test_covariates_are_magnitude_ln_distance_and_ln_pga() -> None:
    _, scalars = make_input(spike_record(), FS_HZ, GMM, None, None, source=(6.5, 20.0))
    np.testing.assert_allclose(scalars, [6.5, np.log(20.0), np.log(5.0)], rtol=1e-6)
    assert GMM.n_scalars == 3


def test_covariates_follow_the_hv_curve_in_the_scalar_vector() -> None:
    features = replace(GMM, hv_bins=6, hv_window_s=5.0)
    record = spike_record()
    _, scalars = make_input(record, FS_HZ, features, None, None, 400, source=(4.0, 0.2))
    assert scalars.shape == (9,)
    np.testing.assert_allclose(scalars[:6], ln_hv_scalars(record, FS_HZ, features, 400))
    # a site on the hypocentre: the distance is floored at 1 km (ln 1 = 0), not -inf
    np.testing.assert_allclose(scalars[6:], [4.0, 0.0, np.log(5.0)], rtol=1e-6)


@pytest.mark.parametrize("source", [(None, 20.0), (6.5, None), (float("nan"), 20.0)])
def test_a_record_without_magnitude_or_distance_is_skipped_with_the_reason(source) -> None:
    with pytest.raises(SkipRecord, match=MISSING_SOURCE.split(" (")[0]):
        make_input(spike_record(), FS_HZ, GMM, None, None, source=source)
    make_input(spike_record(), FS_HZ, replace(GMM, gmm_scalars=False), None, None, source=source)


@pytest.fixture(scope="module")
def prepared(tiny_dataset, tmp_path_factory):
    from deepvs30.prepare import PrepareParams, prepare

    out = tmp_path_factory.mktemp("gmm") / "prepared"
    prepare(tiny_dataset, out, PrepareParams())
    return out


def test_served_model_reads_the_covariates_as_training_did(prepared, tiny_dataset) -> None:
    """ridge on H/V + covariates: the pyfunc on raw records (magnitude and distance as input
    columns) gives the predictions of the prepared-record path to float precision, and the
    covariates move them (a model that ignored the columns would not change)."""
    from deepvs30.dataset import CanonicalDataset, record_ids
    from deepvs30.prepare import load_prepared
    from deepvs30.pyfunc import predict_frame
    from deepvs30.realbench import ridge_model
    from deepvs30.train import predict_dataset
    from deepvs30.windows import WindowDataset

    features = replace(GMM, window_s=10.0, hv_bins=8, hv_window_s=10.0)
    bundle = ridge_model(prepared, features)
    waves, records, summary = load_prepared(prepared)
    test = records[records["split"] == "test"].reset_index(drop=True)
    ln_train_path, _ = predict_dataset(
        bundle, WindowDataset(waves, test, float(summary["fs_hz"]), features, bundle.normaliser)
    )
    with CanonicalDataset(tiny_dataset) as data:
        ids = record_ids(data.metadata)
        rows = []
        for rid in test["record_id"]:
            i = int(np.flatnonzero(ids == rid)[0])
            meta, wave = data.metadata.iloc[i], data.waveform(i)
            rows.append({"record_id": rid, "station": "x",
                         "sampling_rate_hz": float(meta["trace_sampling_rate_hz"]),
                         "magnitude": float(meta["source_magnitude"]),
                         "hyp_distance_km": float(meta["path_hyp_distance_km"]),
                         "z": wave[0], "n": wave[1], "e": wave[2]})  # fmt: skip
    frame = pd.DataFrame(rows)
    served = predict_frame(bundle, frame)
    assert (served["skipped"] == "").all()
    np.testing.assert_allclose(served["ln_vs30"], ln_train_path, rtol=0, atol=1e-5)
    moved = predict_frame(bundle, frame.assign(magnitude=frame["magnitude"] + 1.0))
    assert np.abs(moved["ln_vs30"] - served["ln_vs30"]).max() > 1e-4

    missing = predict_frame(bundle, frame.assign(magnitude=np.nan))
    assert (missing["skipped"] == MISSING_SOURCE).all()


def test_records_without_magnitude_fall_back_to_a_model_without_covariates(prepared) -> None:
    """--fallback-model answers what the covariate model cannot; a fallback that itself reads
    the covariates is accepted and hands those records on to its own fallback."""
    from deepvs30.predict import predict_inputs, with_fallback
    from deepvs30.realbench import ridge_model

    hv = FeatureParams(segmentation="pga_centred", ps_channel=False, window_s=10.0, hv_bins=8,
                       hv_window_s=10.0)  # fmt: skip
    main, fallback = ridge_model(prepared, replace(hv, gmm_scalars=True)), ridge_model(prepared, hv)
    frame = known_and_unknown_magnitude(seed=1)
    out, _ = predict_inputs(main, frame)
    assert out.set_index("record_id").loc["unknown", "skipped"] == MISSING_SOURCE
    out, _ = predict_inputs(with_fallback(main, fallback, "fallback"), frame)
    out = out.set_index("record_id")
    assert out.loc["known", "answered_by"] == "model"
    assert out.loc["unknown", "answered_by"] == "fallback"
    assert (out["skipped"] == "").all() and (out["vs30_mps"] > 0).all()
    chained = with_fallback(main, replace(main, fallback=fallback), "gmm model")
    again, _ = predict_inputs(chained, frame)
    np.testing.assert_allclose(again["ln_vs30"], out.loc[again["record_id"], "ln_vs30"])


def test_a_bundle_carries_its_own_fallback_through_save_and_load(prepared, tmp_path) -> None:
    """The real model stores the arm without covariates inside it: after a save/load round
    trip the served model answers a record without magnitude with the fallback's numbers,
    says so in ``answered_by``, and answers the others itself."""
    from deepvs30.inference import ModelBundle
    from deepvs30.pyfunc import predict_frame
    from deepvs30.realbench import ridge_model

    hv = FeatureParams(segmentation="pga_centred", ps_channel=False, window_s=10.0, hv_bins=8,
                       hv_window_s=10.0)  # fmt: skip
    main, fallback = ridge_model(prepared, replace(hv, gmm_scalars=True)), ridge_model(prepared, hv)
    main.fallback = fallback
    loaded = ModelBundle.load(main.save(tmp_path / "bundle"))
    assert loaded.fallback is not None and not loaded.fallback.features.gmm_scalars
    frame = known_and_unknown_magnitude(seed=2)
    out = predict_frame(loaded, frame).set_index("record_id")
    assert (out["skipped"] == "").all()
    assert out.loc["known", "answered_by"] == "model"
    assert out.loc["unknown", "answered_by"] == "fallback"
    alone = predict_frame(fallback, frame).set_index("record_id")
    assert out.loc["unknown", "ln_vs30"] == pytest.approx(alone.loc["unknown", "ln_vs30"])
    assert out.loc["known", "ln_vs30"] != pytest.approx(alone.loc["known", "ln_vs30"])
    without = predict_frame(replace(loaded, fallback=None), frame).set_index("record_id")
    assert without.loc["unknown", "skipped"] == MISSING_SOURCE
