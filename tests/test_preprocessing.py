"""ECGPreprocessor on real ECGs: lead order by name, resampling, length, errors, sklearn API."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

from ecgsoup import ECGPreprocessor
from ecgsoup.backbones.stmem import EncoderConfig, get_config
from ecgsoup.io import from_array, read_ptbxl, read_wfdb
from ecgsoup.leads import ECGSOUP_LEAD_ORDER, STANDARD_LEAD_ORDER
from ecgsoup.signal import resample

MODEL = "ecgsoup-100hz-tiny"  # the default model's contract: 100 Hz, 1000 samples, ECG-Soup lead order

# sklearn's common checks send random 2-D data with 1-10 columns.  A 12-lead
# model needs a multiple of 12 columns, so the checks run against a one-lead
# contract (MLII -> II, 100 -> 50 Hz, 4-sample window, zero padding): every
# code path (name matching, resampling, padding, lead-major flattening) is
# exercised on arbitrary widths.  Nothing is expected to fail.
CHECK_CONFIG = EncoderConfig(
    name="check-one-lead", sampling_rate=50.0, n_samples=4, patch_size=2, lead_names=("II",),
    width=8, depth=1, heads=1, mlp_dim=8,
)  # fmt: skip
EXPECTED_FAILED_CHECKS: dict = {}


@parametrize_with_checks(
    [ECGPreprocessor(sampling_rate=100, lead_names=("MLII",), model=CHECK_CONFIG, pad="zeros")],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def ptbxl(shared_data):
    return {fs: read_ptbxl(shared_data / "ptbxl_sample", fs) for fs in (100, 500)}


def _prep(ds, **params):
    return ECGPreprocessor(sampling_rate=ds.sampling_rate, lead_names=ds.lead_names, model=MODEL, **params)


def test_leads_are_reordered_by_name(ptbxl):
    ds = ptbxl[100]
    Xt = _prep(ds).set_output(transform="pandas").fit_transform(ds.X)
    assert isinstance(Xt, pd.DataFrame) and Xt.shape == (30, 12 * 1000)
    # Data order I, II, III, aVR, ..., V6; model order I, II, V1..V6, III, aVR, aVL, aVF.
    for lead in ("V1", "III", "aVF"):
        block = Xt.filter(regex=f"^{lead}_t").to_numpy()
        np.testing.assert_array_equal(block, ds.X[:, :, STANDARD_LEAD_ORDER.index(lead)])
    # Same records with the columns shuffled (names shuffled with them): identical output.
    order = np.random.default_rng(0).permutation(12)
    shuffled = ECGPreprocessor(
        sampling_rate=100, lead_names=[ds.lead_names[i] for i in order], model=MODEL
    ).fit_transform(ds.X[:, :, order])
    np.testing.assert_array_equal(shuffled, Xt.to_numpy())


def test_feature_names_are_lead_major_and_zero_padded(ptbxl):
    prep = _prep(ptbxl[100]).fit(ptbxl[100].X)
    names = prep.get_feature_names_out()
    assert names[0] == "I_t0000" and names[999] == "I_t0999" and names[1000] == "II_t0000"
    assert names[2000] == "V1_t0000" and len(names) == 12000
    assert [n.split("_")[0] for n in names[::1000]] == list(ECGSOUP_LEAD_ORDER)


def test_resampling_500_to_100_hz_matches_native_100_hz_records(ptbxl):
    high, low = ptbxl[500], ptbxl[100]
    from_500 = _prep(high).fit_transform(high.X).reshape(30, 12, 1000)
    native = _prep(low).fit_transform(low.X).reshape(30, 12, 1000)
    assert from_500.dtype == np.float32
    # PTB-XL's records100 were decimated by its authors with another filter: the same
    # waveform, not the same bits.  Ignore the filters' edge transients.
    inner = slice(50, -50)
    corr = [np.corrcoef(a[inner], b[inner])[0, 1] for a, b in zip(from_500.reshape(-1, 1000), native.reshape(-1, 1000))]
    assert np.median(corr) > 0.99 and min(corr) > 0.95
    expected = resample(high.X, 500, 100, axis=1)[:, :, STANDARD_LEAD_ORDER.index("V2")]
    np.testing.assert_allclose(from_500[:, ECGSOUP_LEAD_ORDER.index("V2")], expected, atol=1e-6)


def test_flat_time_major_input_equals_3d(ptbxl):
    ds = ptbxl[100]
    prep = _prep(ds)
    flat = ds.X.reshape(len(ds.X), -1)  # row-major flatten of (time, leads) = time-major
    np.testing.assert_array_equal(prep.fit_transform(flat), clone(prep).fit_transform(ds.X))


@pytest.fixture(scope="module")
def cinc(shared_data):
    # Two 15 s Challenge records (CPSC2018 and CPSC-extra, 500 Hz, 7500 samples).
    folder = shared_data / "cinc2020_2021_sample" / "records"
    records = [read_wfdb(folder / name) for name in ("A0001", "Q0002")]
    assert {r.n_samples for r in records} == {7500}
    return from_array(np.stack([r.signal for r in records]), 500, records[0].lead_names)


def test_full_keeps_long_records_and_crop_takes_first_window(cinc):
    full = _prep(cinc).fit(cinc.X)
    assert full.n_samples_out_ == 1500 and full.transform(cinc.X[:2]).shape == (2, 12 * 1500)
    cropped = _prep(cinc, length="crop").fit_transform(cinc.X[:2]).reshape(2, 12, 1000)
    np.testing.assert_array_equal(cropped, full.transform(cinc.X[:2]).reshape(2, 12, 1500)[:, :, :1000])


def test_short_records_error_or_pad(ptbxl):
    short = ptbxl[100].X[:3, :600]
    with pytest.raises(ValueError, match=r"600 samples.*shorter than the model's window of 1000.*pad='zeros'"):
        _prep(ptbxl[100]).fit(short)
    zeros = _prep(ptbxl[100], pad="zeros").fit_transform(short).reshape(3, 12, 1000)
    assert np.all(zeros[:, :, 600:] == 0)
    np.testing.assert_array_equal(zeros[:, 0, :600], short[:, :, 0])
    edge = _prep(ptbxl[100], pad="edge").fit_transform(short).reshape(3, 12, 1000)
    np.testing.assert_array_equal(edge[:, :, 600:], np.repeat(edge[:, :, 599:600], 400, axis=2))


def test_bandpass_from_model_config_and_custom(ptbxl):
    ds = ptbxl[500]
    shifted = ds.X[:4] + 1.0  # real records on a 1 mV baseline offset
    stmem = ECGPreprocessor(sampling_rate=500, lead_names=ds.lead_names, model="st-mem-250hz-tiny")
    filtered = stmem.fit_transform(shifted).reshape(4, 12, 2500)
    assert stmem.bandpass_ == (0.67, 40.0)
    raw = clone(stmem).set_params(bandpass=None).fit_transform(shifted).reshape(4, 12, 2500)
    assert np.abs(raw.mean(-1) - 1.0).max() < 0.3  # the offset survives without filtering
    assert np.abs(filtered.mean(-1)).max() < 0.05  # the 0.67 Hz high-pass removes it
    assert np.corrcoef(filtered[0, 1, 100:-100], raw[0, 1, 100:-100])[0, 1] > 0.8  # QRS kept
    assert _prep(ds).fit(ds.X[:4]).bandpass_ is None  # ecgsoup-100hz: no band-pass
    with pytest.raises(ValueError, match="Nyquist"):
        _prep(ds, bandpass=(0.5, 60)).fit(ds.X[:4])


def test_bad_input_messages(ptbxl):
    ds = ptbxl[100]
    X = ds.X[:5].copy()
    with pytest.raises(ValueError, match="sampling_rate is required.*ds.sampling_rate"):
        ECGPreprocessor(lead_names=ds.lead_names).fit(X)
    with pytest.raises(ValueError, match="lead_names is required"):
        ECGPreprocessor(sampling_rate=100).fit(X)
    with pytest.raises(ValueError, match=r"not standard ECG leads: \['ch7'\].*lead_map"):
        ECGPreprocessor(sampling_rate=100, lead_names=[*ds.lead_names[:7], "ch7", *ds.lead_names[8:]]).fit(X)
    with pytest.raises(ValueError, match=r"needs leads \['V6'\]"):
        ECGPreprocessor(sampling_rate=100, lead_names=ds.lead_names[:11], model=MODEL).fit(X[:, :, :11])
    with pytest.raises(ValueError, match="Duplicate lead names"):
        ECGPreprocessor(sampling_rate=100, lead_names=[*ds.lead_names[:11], "I"], model=MODEL).fit(X)
    with pytest.raises(ValueError, match="11 leads on its last axis but lead_names lists 12"):
        _prep(ds).fit(X[:, :, :11])
    with pytest.raises(ValueError, match="lead-major.*transpose"):
        _prep(ds).fit(X.transpose(0, 2, 1))
    X[3, 10, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values, in records 3 \(record 3: lead\(s\) aVL\)"):
        _prep(ds).fit(X)
    with pytest.raises(ValueError, match="in records 3 "):
        _prep(ds).fit(ds.X[:5]).transform(X)
    with pytest.raises(ValueError, match="fitted on 1000"):
        _prep(ds).fit(ds.X[:5]).transform(np.concatenate([ds.X[:5], ds.X[:5]], axis=1))


def test_lead_map_supplies_a_lead_under_another_name(ptbxl):
    ds = ptbxl[100]
    names = [*ds.lead_names[:6], "ECG_V1", *ds.lead_names[7:]]
    prep = ECGPreprocessor(sampling_rate=100, lead_names=names, lead_map={"V1": "ECG_V1"}, model=MODEL)
    reference = _prep(ds).fit_transform(ds.X)
    np.testing.assert_array_equal(prep.fit_transform(ds.X), reference)
    with pytest.raises(ValueError, match="lead_map keys must be leads of the model"):
        clone(prep).set_params(lead_map={"V7": "ECG_V1"}).fit(ds.X)


def test_default_model_contract_is_ecgsoup_100hz(ptbxl):
    prep = ECGPreprocessor(sampling_rate=100, lead_names=ptbxl[100].lead_names).fit(ptbxl[100].X)
    config = get_config(MODEL)
    # the preprocessor keeps the model's input contract (rate, window, leads), not its architecture
    assert (prep.contract_.sampling_rate, prep.contract_.window, prep.contract_.lead_names) == (
        config.sampling_rate, config.n_samples, config.lead_names,
    ) == (100.0, 1000, tuple(ECGSOUP_LEAD_ORDER))  # fmt: skip


def test_model_directory_contract_is_read_from_config_json(ptbxl, tmp_path):
    from ecgsoup.backbones.stmem import load_config, random_model, save_model

    directory = save_model(random_model("st-mem-250hz-tiny"), tmp_path / "model")
    assert load_config(directory) == get_config("st-mem-250hz-tiny")
    assert load_config(directory / "config.json") == load_config(random_model("st-mem-250hz-tiny"))
    prep = ECGPreprocessor(sampling_rate=500, lead_names=ptbxl[500].lead_names, model=str(directory))
    out = prep.fit_transform(ptbxl[500].X[:2])
    assert out.shape == (2, 12 * 2500)  # 10 s at 250 Hz, in the file's standard lead order
    assert prep.get_feature_names_out()[2500 * 6] == "V1_t0000"
