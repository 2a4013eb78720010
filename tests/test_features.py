"""ECGFeatures on real ECGs: agreement with LUDB's annotations, units, failures, errors, sklearn API."""

import doctest

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import ecgsoup.features
import ecgsoup.hybrid
from ecgsoup import ECGFeatures, load_sample
from ecgsoup.features import FEATURE_NAMES
from ecgsoup.hybrid import BlockScaler, embedding_block, hybrid_features

RECORDS = [0, 1, 2, 3, 4, 9]  # LUDB records 1, 2, 3, 4, 5, 10 (sinus rhythm or bradycardia)

# sklearn's common checks send random 2-D data of 1-20 columns: read as one lead (MLII -> II)
# of a few samples at 100 Hz, it holds no heartbeat, so every feature is NaN (and every record
# gets a report entry).  NaN output is legitimate for ECGFeatures (allow_nan is set, and the
# checks compare NaN as equal), so all checks apply and none is expected to fail.  Finite
# output on real ECGs is tested below.
EXPECTED_FAILED_CHECKS: dict = {}


@parametrize_with_checks(
    [ECGFeatures(sampling_rate=100, lead_names=("MLII",)), BlockScaler()],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def few(ludb):
    """Six LUDB records, 500 Hz, microvolts, with their names and ids."""
    return {
        "x": ludb["x"][RECORDS],
        "fs": float(ludb["fs"]),
        "leads": [str(n) for n in ludb["lead_names"]],
        "ids": ludb["record_id"][RECORDS],
    }


@pytest.fixture(scope="module")
def few_features(few):
    feats = ECGFeatures(sampling_rate=few["fs"], lead_names=few["leads"], units="normalized")
    return feats.set_output(transform="pandas").fit_transform(few["x"]), feats


def _annotated(shared_data, record_id):
    """Heart rate and median QRS / PR / QT (ms) of LUDB's lead II annotation of one record."""
    import wfdb

    ann = wfdb.rdann(str(shared_data / "ludb" / "annotations" / str(record_id)), "ii")
    sym, at = list(ann.symbol), np.asarray(ann.sample)
    qrs = [i for i, s in enumerate(sym) if s == "N"]
    peaks = at[qrs]
    widths = [at[i + 1] - at[i - 1] for i in qrs if sym[i - 1] == "(" and sym[i + 1] == ")"]
    return {"hr_bpm": 60 * ann.fs / np.diff(peaks).mean(), "qrs_ms": np.median(widths) / ann.fs * 1000}


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # inside wfdb's annotation reader
def test_heart_rate_and_qrs_match_the_cardiologists_annotations(few, few_features, shared_data):
    F, _ = few_features
    for row, record_id in enumerate(few["ids"]):
        ref = _annotated(shared_data, int(record_id))
        assert abs(F["hr_bpm"].iloc[row] - ref["hr_bpm"]) < 3, (record_id, F["hr_bpm"].iloc[row], ref)
        assert abs(F["qrs_ms"].iloc[row] - ref["qrs_ms"]) < 45, (record_id, F["qrs_ms"].iloc[row], ref)
    # Plausible adult values everywhere, and the RR-derived quantities agree with each other.
    assert F[["pr_ms", "qrs_ms", "qt_ms"]].notna().all().all()
    assert F["pr_ms"].between(80, 300).all() and F["qt_ms"].between(250, 600).all()
    np.testing.assert_allclose(F["rr_cv"], F["sdnn_ms"] / (60000 / F["hr_bpm"]), rtol=1e-12)
    assert (F["qtc_bazett_ms"] > 0).all() and F["quality"].between(0, 1).all()
    assert F["p_wave_fraction"].between(0.5, 1).all()  # sinus rhythm: P waves


def test_feature_names_carry_units(few_features):
    F, feats = few_features
    names = list(feats.get_feature_names_out())
    assert names == list(F.columns) == list(FEATURE_NAMES)
    unitless = {"n_beats", "rr_cv", "p_wave_fraction", "quality"}
    for name in names:
        assert name in unitless or name.endswith(("_bpm", "_ms", "_pct", "_deg", "_mV")), name


def test_amplitude_columns_only_for_real_units(few):
    x_mv = few["x"][:2] / 1000.0
    kwargs = {"sampling_rate": few["fs"], "lead_names": few["leads"]}
    for units in ("normalized", None):
        names = ECGFeatures(units=units, **kwargs).fit(x_mv).get_feature_names_out()
        assert not any(n.startswith("qrs_amp_") for n in names)
    mv = ECGFeatures(units="mV", **kwargs).set_output(transform="pandas").fit_transform(x_mv)
    uv = ECGFeatures(units="uV", **kwargs).set_output(transform="pandas").fit_transform(few["x"][:2])
    amp = [f"qrs_amp_{lead}_mV" for lead in few["leads"]]
    assert list(mv.columns[len(FEATURE_NAMES) :]) == amp
    pd.testing.assert_frame_equal(mv, uv, rtol=1e-6)  # the 250 Hz analysis copy is float32
    # LUDB's publisher scaled every lead to 1 mV peak-to-peak: QRS amplitudes are at most that.
    assert ((mv[amp] > 0) & (mv[amp] <= 1.0 + 1e-9)).all().all()


def test_flat_and_nan_records_give_nan_and_a_report_not_an_error(few):
    x = few["x"][:3].astype(np.float64)
    x[1] = 0.0  # a disconnected recorder
    x[2, 100:110, 4] = np.nan
    feats = ECGFeatures(sampling_rate=few["fs"], lead_names=few["leads"], units="uV")
    out = feats.fit_transform(x)
    assert np.isfinite(out[0]).all()
    assert np.isnan(out[1, 1:]).all() and out[1, 0] == 0  # n_beats = 0, everything else NaN
    assert np.isnan(out[2]).all()
    report = feats.report_
    assert list(report.columns) == ["lead", "n_beats", "failed_steps", "reasons", "n_warnings"]
    assert report.loc[0, "failed_steps"] == "" and report.loc[0, "lead"] == "II"
    assert report.loc[1, "reasons"] == "input: all leads flat"
    assert "NaN or infinite" in report.loc[2, "reasons"]
    # A record's features do not depend on its neighbours.
    np.testing.assert_array_equal(out[0], feats.transform(x[:1])[0])
    pd.testing.assert_frame_equal(feats.report(x), report)


def test_rhythm_lead_falls_back_when_lead_ii_is_missing(few):
    keep = [i for i, lead in enumerate(few["leads"]) if lead != "II"]
    x = few["x"][:2][:, :, keep]
    feats = ECGFeatures(sampling_rate=few["fs"], lead_names=[few["leads"][i] for i in keep], units="normalized")
    out = feats.fit_transform(x)
    assert feats.rhythm_lead_ == "I" and feats.report_["lead"].tolist() == ["I", "I"]
    assert np.isfinite(out[:, FEATURE_NAMES.index("hr_bpm")]).all()


def test_leads_are_matched_by_name_and_flat_input_is_accepted(few):
    x = few["x"][:2]
    base = ECGFeatures(sampling_rate=few["fs"], lead_names=few["leads"], units="uV").fit_transform(x)
    order = np.random.default_rng(0).permutation(12)
    spelled = [few["leads"][i].upper() for i in order]  # "AVR", "V1", ...
    shuffled = ECGFeatures(sampling_rate=few["fs"], lead_names=spelled, units="uV").fit(x[:, :, order])
    out = shuffled.transform(x[:, :, order])
    np.testing.assert_array_equal(out[:, : len(FEATURE_NAMES)], base[:, : len(FEATURE_NAMES)])
    np.testing.assert_array_equal(out[:, len(FEATURE_NAMES) :], base[:, len(FEATURE_NAMES) :][:, order])
    flat = ECGFeatures(sampling_rate=few["fs"], lead_names=few["leads"], units="uV").fit_transform(x.reshape(2, -1))
    np.testing.assert_array_equal(flat, base)


def test_bad_input_raises_a_clear_error(few):
    x = few["x"][:1]
    leads = few["leads"]
    with pytest.raises(ValueError, match="sampling_rate is required"):
        ECGFeatures(lead_names=leads).fit(x)
    with pytest.raises(ValueError, match="lead_names is required"):
        ECGFeatures(sampling_rate=500).fit(x)
    with pytest.raises(ValueError, match=r"not standard ECG leads: \['ECG9'\]"):
        ECGFeatures(sampling_rate=500, lead_names=[*leads[:11], "ECG9"]).fit(x)
    with pytest.raises(ValueError, match="looks lead-major"):
        ECGFeatures(sampling_rate=500, lead_names=leads).fit(x.transpose(0, 2, 1))
    with pytest.raises(ValueError, match="not a whole number of samples"):
        ECGFeatures(sampling_rate=500, lead_names=leads).fit(x.reshape(1, -1)[:, :-1])
    with pytest.raises(ValueError, match="units"):
        ECGFeatures(sampling_rate=500, lead_names=leads, units="volts").fit(x)
    fitted = ECGFeatures(sampling_rate=500, lead_names=leads, units="uV").fit(x)
    with pytest.raises(ValueError, match="samples per lead but ECGFeatures was fitted on 5000"):
        fitted.transform(few["x"][:1, :4000])


def test_deterministic_and_independent_of_n_jobs(few):
    x = few["x"][:4]
    feats = ECGFeatures(sampling_rate=few["fs"], lead_names=few["leads"], units="uV")
    first = feats.fit_transform(x)
    np.testing.assert_array_equal(first, clone(feats).fit_transform(x))
    parallel = clone(feats).set_params(n_jobs=2)
    np.testing.assert_array_equal(first, parallel.fit_transform(x))
    pd.testing.assert_frame_equal(feats.report_, parallel.report_)


def test_pandas_output_and_bundled_sample():
    ds = load_sample()
    feats = ECGFeatures(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names, units="normalized")
    F = feats.set_output(transform="pandas").fit_transform(ds.X[:3])
    assert isinstance(F, pd.DataFrame) and F.shape == (3, len(FEATURE_NAMES))
    assert list(F.columns) == list(feats.get_feature_names_out())
    assert len(feats.report_) == 3 and (feats.report_["failed_steps"] == "").all()


@pytest.mark.parametrize("module", [ecgsoup.features, ecgsoup.hybrid])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_hybrid_blocks_are_balanced_and_named(one_torch_thread):
    ds = load_sample()
    feats = ECGFeatures(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names, units="normalized")
    emb = embedding_block(ds.sampling_rate, ds.lead_names, model="random:ecgsoup-100hz-tiny")
    hybrid = hybrid_features(feats, emb).set_output(transform="pandas")
    Z = hybrid.fit_transform(ds.X[:12])
    n_clinical = len(FEATURE_NAMES)
    assert Z.shape == (12, n_clinical + 192)
    assert Z.columns[0] == "clinical__n_beats" and Z.columns[n_clinical] == "embedding__layer12_dim0000"
    # Each block has a total variance of 1 on the training records, whatever its width.
    np.testing.assert_allclose(Z.iloc[:, :n_clinical].var(axis=0, ddof=0).sum(), 1.0)
    np.testing.assert_allclose(Z.iloc[:, n_clinical:].var(axis=0, ddof=0).sum(), 1.0, rtol=1e-5)
    # The clinical report is kept on the fitted block.
    assert len(hybrid.named_transformers["clinical"].named_steps["features"].report_) == 12
    with pytest.raises(ValueError, match="unknown blocks"):
        hybrid_features(feats, emb, weights={"ecg": 2.0})


def test_embedding_block_chooses_layers_through_the_embedders_fusion(one_torch_thread):
    from ecgsoup.blocks import BlockScaler as BlockScalerOfBlocks
    from ecgsoup.fusion import LayerSelector

    assert BlockScaler is BlockScalerOfBlocks  # moved to ecgsoup.blocks, still importable from hybrid
    ds = load_sample()
    emb = embedding_block(ds.sampling_rate, ds.lead_names, model="random:ecgsoup-100hz-tiny", layers=6)
    assert list(emb.named_steps) == ["prep", "embed"]
    assert isinstance(emb.named_steps["embed"].fusion, LayerSelector) and emb.get_params()["embed__fusion__layers"] == 6
    Z = emb.set_output(transform="pandas").fit_transform(ds.X[:4])
    assert Z.shape == (4, 192) and Z.columns[0] == "layer06_dim0000"
    # the layer choice is reached through the hybrid union, as a grid search sets it
    hybrid = hybrid_features(ECGFeatures(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names), emb)
    hybrid.set_params(embedding__encoder__embed__fusion__layers=[3, 9])
    names = hybrid.set_output(transform="pandas").fit_transform(ds.X[:4]).columns
    assert [n for n in names if n.endswith("_dim0000")] == ["embedding__layer03_dim0000", "embedding__layer09_dim0000"]
    # the selected layer goes through the model's readout (its final LayerNorm)
    from ecgsoup import LayerwiseEmbedder

    fitted = emb.named_steps["embed"]
    raw = LayerwiseEmbedder(model="random:ecgsoup-100hz-tiny", layers=6).fit_transform(emb.named_steps["prep"].transform(ds.X[:4]))
    assert fitted.layer_spec_.readout.kind == "layernorm"
    np.testing.assert_allclose(Z.to_numpy(), fitted.layer_spec_.readout(raw), atol=1e-5)
    assert not np.allclose(Z.to_numpy(), raw, atol=1e-2)
