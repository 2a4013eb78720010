"""LayerwiseEmbedder on real LUDB records, with random (untrained) tiny encoders."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import ecgsoup
from ecgsoup import PMA, PPA, LayerSelector, LayerwiseEmbedder
from ecgsoup.cache import clear_memo
from ecgsoup.embedding import _check_finite, _window_starts
from ecgsoup.leads import ECGSOUP_LEAD_ORDER
from ecgsoup.backbones.stmem import STMEMEncoder, WeightsError, random_model, save_model
from ecgsoup.signal import lead_indices, resample, zscore

N_LAYERS, DIM = 13, 192
TINY = "random:ecgsoup-100hz-tiny"


def model_ready(ludb, records) -> np.ndarray:
    """LUDB records, model-ready and 3-D: (n, 12 leads in model order, 1000 samples at 100 Hz)."""
    x = ludb["x"][records].astype(np.float32) / 1000.0  # µV -> mV
    x = resample(x, float(ludb["fs"]), 100.0)  # (n, 1000, 12), time-major
    x = x[:, :, lead_indices(list(ludb["lead_names"]), ECGSOUP_LEAD_ORDER)]
    return np.ascontiguousarray(x.transpose(0, 2, 1))


@pytest.fixture(scope="module")
def ecg(ludb):
    """Six real LUDB records, (6, 12, 1000)."""
    return model_ready(ludb, np.arange(6))


@pytest.fixture(scope="module")
def flat(ecg):
    """The same records in the flat lead-major layout of ECGPreprocessor."""
    return ecg.reshape(len(ecg), -1)


@pytest.fixture
def count_forward(monkeypatch):
    """Count the windows the backbone sees (all embedders share the class method)."""
    seen = []
    original = STMEMEncoder.pooled_layers

    def counting(self, x):
        seen.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(STMEMEncoder, "pooled_layers", counting)
    clear_memo()
    yield seen
    clear_memo()


def direct_pooled(encoder, windows, autocast=False):
    """What the embedder must return: pooled_layers on per-lead z-scored windows."""
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        return encoder.pooled_layers(torch.from_numpy(zscore(windows, axis=-1))).float().numpy()


# -- output ------------------------------------------------------------------------------
def test_shape_names_and_equality_with_direct_forward(flat, ecg, tiny_model, tiny_spec):
    emb = LayerwiseEmbedder(model=tiny_model).fit(flat)
    E = emb.transform(flat)
    assert E.shape == (6, N_LAYERS * DIM) and E.dtype == np.float32  # [h_0 | ... | h_12], nothing else
    assert (emb.n_layers_, emb.dim_, emb.layers_) == (13, 192, tuple(range(13)))
    assert emb.fusion_ is None
    expected = direct_pooled(tiny_model, ecg)  # one window per record: no averaging
    np.testing.assert_array_equal(E, expected.reshape(6, -1))
    names = emb.get_feature_names_out()
    assert len(names) == E.shape[1]
    assert names[3 * DIM + 127] == "layer03_dim0127" and names[-1] == "layer12_dim0191"
    # the columns are described by the spec: the model's id, layers and final LayerNorm readout
    spec = emb.layer_spec_
    assert spec.model_id == emb.fingerprint_ == tiny_spec.model_id and len(spec.model_id) == 64
    assert spec.same_model(tiny_spec) and spec.n_features == E.shape[1] and spec.widths == (DIM,) * N_LAYERS
    assert spec.readout == tiny_model.readout() and spec.readout.kind == "layernorm"
    np.testing.assert_array_equal(spec.readout.weight, tiny_model.norm.weight.detach().numpy())
    np.testing.assert_array_equal(spec.feature_names(), names)
    # the input contract the records were checked against
    contract = emb.contract_
    assert (contract.sampling_rate, contract.window, contract.n_leads) == (100.0, 1000, 12)
    assert contract.lead_names == tuple(ECGSOUP_LEAD_ORDER)
    # real records differ from each other at every layer
    assert np.all(expected.std(axis=0).max(axis=-1) > 0)


def test_three_d_input_equals_flat_and_layer_choice(flat, ecg):
    emb3 = LayerwiseEmbedder(model=TINY).fit(ecg)
    assert emb3.n_features_in_ == 12
    E = LayerwiseEmbedder(model=TINY).fit_transform(flat)
    np.testing.assert_array_equal(emb3.transform(ecg), E)
    some = LayerwiseEmbedder(model=TINY, layers=[6, -1]).fit(ecg)
    S = some.transform(ecg)
    expected = np.hstack([E[:, 6 * DIM : 7 * DIM], E[:, 12 * DIM : 13 * DIM]])
    np.testing.assert_array_equal(S, expected)
    assert some.get_feature_names_out()[[0, -1]].tolist() == ["layer06_dim0000", "layer12_dim0191"]
    # the spec describes the returned layers only, with their place in the model
    assert [layer.name for layer in some.layer_spec_.layers] == ["layer06", "layer12"]
    assert some.layer_spec_.indices == (6, 12) and some.layer_spec_.n_features == 2 * DIM
    assert some.layer_spec_.model_id == emb3.layer_spec_.model_id


def test_pandas_output(flat):
    emb = LayerwiseEmbedder(model=TINY, layers="last").set_output(transform="pandas")
    frame = emb.fit_transform(flat[:2])
    assert list(frame.columns[:2]) == ["layer12_dim0000", "layer12_dim0001"]
    assert frame.shape == (2, DIM) and frame.dtypes.unique().tolist() == [np.float32]


def test_windows_are_averaged_for_20_second_records(ecg, tiny_model):
    assert _window_starts(2000, 1000, 500).tolist() == [0, 500, 1000]
    assert _window_starts(1700, 1000, 500).tolist() == [0, 500, 700]  # last one flush with the end
    assert _window_starts(1000, 1000, 500).tolist() == [0]
    long = np.concatenate([ecg[:3], ecg[3:]], axis=2)  # 3 real 20 s records
    E = LayerwiseEmbedder(model=tiny_model).fit_transform(long)
    windows = np.stack([long[:, :, s : s + 1000] for s in (0, 500, 1000)], axis=1)
    expected = direct_pooled(tiny_model, windows.reshape(-1, 12, 1000)).reshape(3, 3, N_LAYERS, DIM)
    np.testing.assert_allclose(E, expected.mean(axis=1).reshape(3, -1), rtol=1e-6, atol=1e-6)
    # stride = one window: the mean of the two 10 s halves' embeddings
    halves = LayerwiseEmbedder(model=tiny_model, window_stride=1000).fit(long)
    single = LayerwiseEmbedder(model=tiny_model).fit_transform(ecg)
    mean_of_halves = (single[:3] + single[3:]) / 2
    np.testing.assert_allclose(halves.transform(long), mean_of_halves, rtol=1e-5, atol=1e-6)


def test_batch_size_does_not_change_the_result(flat):
    results = [LayerwiseEmbedder(model=TINY, batch_size=b).fit_transform(flat) for b in (1, 4, 32)]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-6, atol=1e-7)


def layer_cosine(a, b):
    """Cosine of two (n, 13 * 192) embeddings, per record and layer."""
    a = a.reshape(len(a), N_LAYERS, DIM).astype(np.float64)
    b = b.reshape(len(b), N_LAYERS, DIM).astype(np.float64)
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_bfloat16_is_close_to_float32(ecg):
    e32 = LayerwiseEmbedder(model=TINY).fit_transform(ecg[:3])
    bf16 = LayerwiseEmbedder(model=TINY, precision="bfloat16")
    e16 = bf16.fit_transform(ecg[:3])
    assert e16.dtype == np.float32
    assert not np.array_equal(e16, e32)  # the forward pass did run in bfloat16
    assert layer_cosine(e32, e16).min() >= 0.999
    # 20 s records (several windows each) as well
    long = np.concatenate([ecg[:3], ecg[3:]], axis=2)
    e32_long = LayerwiseEmbedder(model=TINY).fit_transform(long)
    assert layer_cosine(e32_long, bf16.fit_transform(long)).min() >= 0.999


def test_bfloat16_runs_a_cached_bf16_copy_and_leaves_the_encoder_alone(ecg, tiny_model):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    emb = LayerwiseEmbedder(model=tiny_model, precision="bfloat16").fit(ecg[:2])
    E = emb.transform(ecg[:2])
    # the passed encoder and model_ stay float32 and unchanged
    assert all(p.dtype == torch.float32 for p in tiny_model.parameters())
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    assert emb.model_.blocks[0].fc1.weight.dtype == torch.float32
    # the copy: bf16 matrices, float32 LayerNorm parameters (torch normalises
    # bf16 input in float32 internally; float32 gamma/beta avoid their rounding)
    copy16 = emb._forward_model()
    assert copy16 is not tiny_model and copy16 is not emb.model_
    assert copy16.blocks[0].fc1.weight.dtype == torch.bfloat16
    assert copy16.blocks[0].attn_norm.weight.dtype == torch.float32
    assert copy16.norm.weight.dtype == torch.float32
    # made once: a clone (as in GridSearchCV) reuses it instead of casting again
    assert clone(emb).fit(ecg[:1])._forward_model() is copy16
    # the output is exactly that copy's forward pass, as float32; the readout comes from model_
    windows = torch.from_numpy(zscore(ecg[:2], axis=-1)).to(torch.bfloat16)
    with torch.inference_mode():
        expected = copy16.pooled_layers(windows).float().numpy()
    np.testing.assert_array_equal(E, expected.reshape(2, -1))
    assert emb.layer_spec_.readout == tiny_model.readout()
    assert emb.layer_spec_.readout.weight.dtype == np.float32
    # an encoder edited in place gets a new copy at the next fit
    edited = random_model("ecgsoup-100hz-tiny", seed=3)
    first = LayerwiseEmbedder(model=edited, precision="bfloat16").fit(ecg[:1])
    with torch.no_grad():
        edited.blocks[0].fc1.weight.mul_(2.0)
    second = LayerwiseEmbedder(model=edited, precision="bfloat16").fit(ecg[:1])
    assert second._forward_model() is not first._forward_model()


def test_progress_bar_only_when_verbose(flat, capsys):
    LayerwiseEmbedder(model=TINY).fit_transform(flat[:1])
    quiet = capsys.readouterr()
    assert quiet.out == "" and quiet.err == ""
    LayerwiseEmbedder(model=TINY, verbose=1).fit_transform(flat[:1])
    loud = capsys.readouterr()
    assert loud.out == "" and "embedding" in loud.err


# -- fusion ------------------------------------------------------------------------------------
def test_fusion_equals_the_fusion_fitted_on_the_layers_with_the_spec(flat, labels):
    """``LayerwiseEmbedder(fusion=f)`` returns ``f(layer_spec=layer_spec_)`` fitted on its own layers."""
    emb = LayerwiseEmbedder(model=TINY).fit(flat)
    E = emb.transform(flat)
    y = np.array([0, 1, 0, 1, 1, 0])
    cases = [(PPA(), None), (LayerSelector(layers=6), None), (LayerSelector(layers=[2, "layer09"]), None),
             (PMA(max_iter=3, random_state=0), y)]  # fmt: skip
    for fusion, target in cases:
        embedder = LayerwiseEmbedder(model=TINY, fusion=fusion)
        out = embedder.fit_transform(flat, target)
        alone = clone(fusion).set_params(layer_spec=emb.layer_spec_)
        expected = alone.fit_transform(E, target) if target is not None else alone.fit_transform(E)
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
        # fit then transform gives the same; the fitted clone holds the spec, the parameter stays as given
        refitted = LayerwiseEmbedder(model=TINY, fusion=fusion).fit(flat, target)
        np.testing.assert_allclose(refitted.transform(flat), expected, rtol=1e-6, atol=1e-6)
        assert refitted.fusion_ is not fusion and fusion.layer_spec is None
        assert refitted.fusion_.layer_spec is refitted.layer_spec_
        np.testing.assert_array_equal(refitted.get_feature_names_out(), alone.get_feature_names_out())
    # the spec's readout is applied: PPA is LN_enc of the mean of blocks 1..12, not the plain mean
    H = E.reshape(6, N_LAYERS, DIM)
    ppa = LayerwiseEmbedder(model=TINY, fusion=PPA()).fit_transform(flat)
    np.testing.assert_allclose(ppa, emb.layer_spec_.readout(H[:, 1:].mean(axis=1)), atol=1e-5)
    assert not np.allclose(ppa, H[:, 1:].mean(axis=1), atol=1e-2)
    assert LayerwiseEmbedder(model=TINY, fusion=PPA()).fit(flat).get_feature_names_out()[0] == "ppa_dim0000"


def test_fusion_sees_only_the_returned_layers(flat):
    emb = LayerwiseEmbedder(model=TINY, layers=[3, 6, 9], fusion=PPA(layers="all")).fit(flat)
    E = LayerwiseEmbedder(model=TINY).fit_transform(flat).reshape(6, N_LAYERS, DIM)
    expected = emb.layer_spec_.readout((E[:, 3] + E[:, 6] + E[:, 9]) / 3)
    np.testing.assert_allclose(emb.transform(flat), expected, atol=1e-5)
    assert emb.fusion_.layer_spec_.indices == (3, 6, 9)
    # names refer to the layers the embedder returns
    chosen = LayerwiseEmbedder(model=TINY, layers=[3, 6, 9], fusion=LayerSelector(layers="layer06")).fit(flat)
    np.testing.assert_allclose(chosen.transform(flat), emb.layer_spec_.readout(E[:, 6]), atol=1e-5)


def test_fusion_without_a_layer_spec_is_refused(flat):
    from sklearn.preprocessing import StandardScaler

    with pytest.raises(TypeError, match="fusion=StandardScaler takes no layer_spec.*Pipeline"):
        LayerwiseEmbedder(model=TINY, fusion=StandardScaler()).fit(flat[:2])
    with pytest.raises(ValueError, match="fusion"):
        LayerwiseEmbedder(model=TINY, fusion="ppa").fit(flat[:2])


# -- cache ---------------------------------------------------------------------------------
def test_cache_second_transform_runs_no_forward(flat, tmp_path, count_forward):
    plain = LayerwiseEmbedder(model=TINY).fit_transform(flat[:4])
    assert sum(count_forward) == 4
    emb = LayerwiseEmbedder(model=TINY, memory=tmp_path / "cache")
    first = emb.fit_transform(flat[:4])
    assert sum(count_forward) == 8
    np.testing.assert_array_equal(first, plain)
    # a clone (as GridSearchCV makes), other rows, other order: memo hits only
    again = clone(emb).fit(flat[:4]).transform(flat[[3, 1, 0, 2]])
    assert sum(count_forward) == 8
    np.testing.assert_array_equal(again, plain[[3, 1, 0, 2]])
    # a new process would only have the folder: disk hits, no forward
    clear_memo()
    np.testing.assert_array_equal(clone(emb).fit_transform(flat[:4]), plain)
    assert sum(count_forward) == 8
    # only the new record is embedded, and a duplicated record only once
    mixed = clone(emb).fit(flat[:4]).transform(flat[[0, 4, 4]])
    assert sum(count_forward) == 9
    np.testing.assert_array_equal(mixed[1], mixed[2])
    # layers and fusion are applied after the cache
    last = LayerwiseEmbedder(model=TINY, memory=tmp_path / "cache", layers="last")
    np.testing.assert_array_equal(last.fit_transform(flat[:4]), plain[:, 12 * DIM : 13 * DIM])
    fused = LayerwiseEmbedder(model=TINY, memory=tmp_path / "cache", fusion=PPA())
    spec = emb.layer_spec_
    np.testing.assert_array_equal(fused.fit_transform(flat[:4]), PPA(layer_spec=spec).fit_transform(plain))
    assert sum(count_forward) == 9


def test_cache_misses_when_model_version_or_settings_change(
    flat, tmp_path, count_forward, monkeypatch
):
    memory = str(tmp_path / "cache")
    base = LayerwiseEmbedder(model=TINY, memory=memory).fit_transform(flat[:2])
    assert sum(count_forward) == 2
    # another model (other seed, same architecture) must miss
    other = random_model("ecgsoup-100hz-tiny", seed=1)
    E_other = LayerwiseEmbedder(model=other, memory=memory).fit_transform(flat[:2])
    assert sum(count_forward) == 4 and not np.allclose(E_other, base)
    # the same encoder object edited in place must miss too
    with torch.no_grad():
        other.blocks[3].fc1.weight.mul_(1.5)
    E_edited = LayerwiseEmbedder(model=other, memory=memory).fit_transform(flat[:2])
    assert sum(count_forward) == 6 and not np.allclose(E_edited, E_other)
    # precision and windows change the numbers: they are part of the key
    LayerwiseEmbedder(model=TINY, memory=memory, precision="bfloat16").fit_transform(flat[:2])
    assert sum(count_forward) == 8
    # a new ecgsoup version misses as well
    monkeypatch.setattr(ecgsoup._version, "__version__", "999.0")
    new_version = LayerwiseEmbedder(model=TINY, memory=memory).fit_transform(flat[:2])
    np.testing.assert_array_equal(new_version, base)
    assert sum(count_forward) == 10
    # device and batch_size do not change the result: still hits
    monkeypatch.undo()
    LayerwiseEmbedder(model=TINY, memory=memory, batch_size=1).fit_transform(flat[:2])
    assert sum(count_forward) == 10


def test_cache_misses_when_weights_file_changes(flat, tmp_path, count_forward):
    path = save_model(random_model("ecgsoup-100hz-tiny", seed=3), tmp_path / "model")
    memory = tmp_path / "cache"
    emb = LayerwiseEmbedder(model=str(path), memory=memory).fit(flat[:2])
    first = emb.transform(flat[:2])
    assert emb.fingerprint_ == emb.model_.metadata["sha256"] and sum(count_forward) == 2
    save_model(random_model("ecgsoup-100hz-tiny", seed=4), path)  # same path, new weights
    refit = clone(emb).fit(flat[:2])
    assert refit.fingerprint_ != emb.fingerprint_
    assert not np.allclose(refit.transform(flat[:2]), first) and sum(count_forward) == 4


def _cache_files(folder):
    return sorted((folder / "ecgsoup-embeddings").rglob("*"))


def test_cache_folder_holds_one_npy_per_record_and_no_temporary_files(flat, tmp_path, count_forward):
    folder = tmp_path / "cache"
    E = LayerwiseEmbedder(model=TINY, memory=folder).fit_transform(flat[:3])
    files = [f for f in _cache_files(folder) if f.is_file()]
    assert len(files) == 3 and all(f.suffix == ".npy" for f in files)
    stored = np.load(files[0])
    # one record's pooled layers, [h_0 | ... | h_12] as layer_spec_ describes them
    assert stored.dtype == np.float32 and stored.size == N_LAYERS * DIM
    assert any(np.array_equal(stored.reshape(-1), row) for row in E)


def test_unreadable_cache_file_is_a_miss_and_is_rewritten(flat, tmp_path, count_forward):
    folder = tmp_path / "cache"
    emb = LayerwiseEmbedder(model=TINY, memory=folder)
    first = emb.fit_transform(flat[:2])
    assert sum(count_forward) == 2
    broken = [f for f in _cache_files(folder) if f.is_file()][0]
    broken.write_bytes(broken.read_bytes()[:40])  # truncated, as by a full disk or a killed job
    clear_memo()
    np.testing.assert_array_equal(clone(emb).fit_transform(flat[:2]), first)
    assert sum(count_forward) == 3  # only the broken record again
    clear_memo()
    np.testing.assert_array_equal(clone(emb).fit_transform(flat[:2]), first)
    assert sum(count_forward) == 3  # and it was rewritten


def test_cache_that_cannot_be_written_warns_and_still_returns_the_embeddings(flat, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "ecgsoup-embeddings").write_text("a file where the cache folder would go")
    plain = LayerwiseEmbedder(model=TINY).fit_transform(flat[:2])
    clear_memo()
    with pytest.warns(RuntimeWarning, match=r"Could not write the embedding cache in .*Give memory= a writable folder"):
        E = LayerwiseEmbedder(model=TINY, memory=folder).fit_transform(flat[:2])
    np.testing.assert_array_equal(E, plain)
    assert (folder / "ecgsoup-embeddings").read_text().startswith("a file")  # left as it was
    clear_memo()


class _WrappedMemory:
    """A Memory-like object that is not a joblib.Memory: only its cache method is used."""

    def __init__(self, location):
        import joblib

        self._memory = joblib.Memory(location, verbose=0)

    def cache(self, func):
        return self._memory.cache(func)


def test_memory_like_objects_cache_through_their_cache_method(flat, tmp_path, count_forward):
    memory = _WrappedMemory(tmp_path / "joblib")
    emb = LayerwiseEmbedder(model=TINY, memory=memory)
    first = emb.fit_transform(flat[:3])
    clear_memo()  # only the object's own store is left
    np.testing.assert_array_equal(clone(emb).fit_transform(flat[:3]), first)
    assert sum(count_forward) == 3


# -- sklearn behaviour -------------------------------------------------------------------------
def test_clone_and_pickle(flat, tmp_path):
    emb = LayerwiseEmbedder(model=TINY, layers=(1, 2), batch_size=3, memory=str(tmp_path))
    assert clone(emb).get_params() == emb.get_params()
    emb.fit(flat[:2])
    restored = pickle.loads(pickle.dumps(emb))
    np.testing.assert_array_equal(restored.transform(flat[:2]), emb.transform(flat[:2]))
    assert not hasattr(clone(emb), "model_")


def test_fit_does_not_touch_a_passed_encoder(flat):
    encoder = random_model("ecgsoup-100hz-tiny", seed=2).train()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    emb = LayerwiseEmbedder(model=encoder).fit(flat[:1])
    assert encoder.training and emb.model_ is not encoder and not emb.model_.training
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())


# -- errors ------------------------------------------------------------------------------------
def test_errors_name_the_problem_and_the_fix(ecg, flat, tmp_path):
    tiny = LayerwiseEmbedder(model=TINY)
    with pytest.raises(ValueError, match=r"X has 11 leads\. .*expects 12 leads .*ECGPreprocessor"):
        tiny.fit(ecg[:, :11])
    with pytest.raises(ValueError, match=r"500 samples per lead\. .*at least 1000 samples"):
        tiny.fit(ecg[:, :, :500])
    with pytest.raises(ValueError, match=r"12001 columns, which is not 12 leads"):
        tiny.fit(np.hstack([flat, flat[:, :1]]))
    bad = flat[:3].copy()
    bad[1, 5] = np.nan
    bad[2, 7] = np.inf
    with pytest.raises(ValueError, match=r"2 NaN or infinite .* records 1, 2"):
        tiny.fit(bad)
    fitted = LayerwiseEmbedder(model=TINY).fit(flat[:1])
    with pytest.raises(ValueError, match="NaN or infinite"):
        fitted.transform(bad)
    # many records (checked a few MiB at a time): bad ones past the first chunk are found
    many = np.tile(flat, (70, 1))  # 420 real records, 20 MB
    _check_finite(many)
    many[250, 3] = np.nan
    many[419, 11999] = -np.inf
    many[419, 0] = np.nan
    with pytest.raises(ValueError, match=r"3 NaN or infinite .* records 250, 419\. Interpolate"):
        _check_finite(many)
    with pytest.raises(ValueError, match="is expecting 12000 features"):
        fitted.transform(flat[:, :6000])
    with pytest.raises(WeightsError, match="nowhere'?: not a registered name, not an existing path"):
        LayerwiseEmbedder(model=str(tmp_path / "nowhere")).fit(flat[:1])
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="has no config.json"):
        LayerwiseEmbedder(model=tmp_path / "empty").fit(flat[:1])
    with pytest.raises(ValueError, match="configuration name, not weights.*'random:ecgsoup-100hz"):
        LayerwiseEmbedder(model="ecgsoup-100hz-tiny").fit(flat[:1])
    with pytest.raises(ValueError, match="Unknown model configuration"):
        LayerwiseEmbedder(model="random:resnet").fit(flat[:1])
    with pytest.raises(ValueError, match="window_stride=1500 is longer than the model's window"):
        LayerwiseEmbedder(model=TINY, window_stride=1500).fit(flat[:1])
    with pytest.raises(ValueError, match="precision"):
        LayerwiseEmbedder(model=TINY, precision="float16").fit(flat[:1])
    with pytest.raises(ValueError, match="Layer 13 does not exist"):
        LayerwiseEmbedder(model=TINY, layers=13).fit(flat[:1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(flat):
    with pytest.raises(ValueError, match="CUDA is not available.*device='cpu'"):
        LayerwiseEmbedder(model=TINY, device="cuda").fit(flat[:1])


def test_random_model_takes_its_shape_from_generic_data(ecg):
    emb = LayerwiseEmbedder(model="random").fit(np.random.default_rng(0).normal(size=(3, 7)))
    assert (emb.config_.n_leads, emb.config_.n_samples, emb.config_.patch_size) == (1, 7, 7)
    # real 12-lead input gets the tiny ECG-Soup geometry, identical to the named random model
    real = LayerwiseEmbedder(model="random").fit(ecg[:2])
    assert real.config_.name == "ecgsoup-100hz-tiny"
    named = LayerwiseEmbedder(model=TINY).fit_transform(ecg[:2])
    np.testing.assert_array_equal(real.transform(ecg[:2]), named)


# The fused embedder too: fusion is a nested estimator parameter (cloned, never fitted in place).
@parametrize_with_checks([LayerwiseEmbedder(model="random"), LayerwiseEmbedder(model="random", fusion=PPA())])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# -- record keys ---------------------------------------------------------------------------
def _sha256_key(record: np.ndarray) -> str:
    import hashlib

    digest = hashlib.sha256(repr(record.shape).encode())
    digest.update(np.ascontiguousarray(record, dtype=np.float32).data)
    return digest.hexdigest()


def test_record_keys_are_sha256_of_shape_and_samples_also_when_remembered(ecg):
    from ecgsoup.cache import record_keys

    clear_memo()
    expected = [_sha256_key(record) for record in ecg]
    assert record_keys(ecg) == expected  # computed
    assert record_keys(ecg[[5, 0, 3]].copy()) == [expected[5], expected[0], expected[3]]  # remembered
    # the same samples read as 6 leads are another record
    assert record_keys(ecg[:1].reshape(1, 6, -1))[0] != expected[0]


def test_record_keys_tell_apart_records_that_share_their_sketch(ecg):
    """Records equal at every sketched sample but different elsewhere get their own keys."""
    from ecgsoup.cache import record_keys

    clear_memo()
    base = ecg[0].copy()
    other = base.copy()
    other.reshape(-1)[1] += 0.001  # sample 1 is not in the sketch (it takes every k-th)
    twins = np.stack([base, other])
    first = record_keys(twins[:1])
    assert record_keys(twins) == [first[0], _sha256_key(other)]
    assert record_keys(twins[::-1].copy()) == [_sha256_key(other), first[0]]


def test_record_key_memo_stays_within_its_bound(ecg):
    from ecgsoup import cache

    clear_memo()
    previous = cache.set_memo_limits(key_max_bytes=3 * ecg[0].nbytes)
    try:
        keys = cache.record_keys(ecg)
        assert 0 < cache.memo_info()["key_bytes"] <= 3 * ecg[0].nbytes
        assert keys == [_sha256_key(record) for record in ecg]  # evicted ones are hashed again
        assert cache.record_keys(ecg) == keys
        cache.set_memo_limits(key_max_bytes=0)  # a lowered bound drops what no longer fits
        assert cache.memo_info()["key_bytes"] == 0
    finally:
        cache.set_memo_limits(**previous)
    assert cache.memo_info()["key_max_bytes"] == previous["key_max_bytes"]
    clear_memo()
    assert cache.memo_info()["key_bytes"] == 0


def test_with_a_cache_nan_records_are_still_refused_by_their_index(flat, tmp_path):
    """With memory=, only records missing from the cache are checked: a NaN is still caught."""
    clear_memo()
    emb = LayerwiseEmbedder(model=TINY, memory=tmp_path / "cache")
    emb.fit_transform(flat[:3])  # cached now
    bad = flat[:5].copy()
    bad[4, 7] = np.nan
    with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite \(inf\) values, in records 4\. "):
        emb.transform(bad)
    with pytest.raises(ValueError, match=r"in records 4\. "):
        clone(emb).fit_transform(bad)
    np.testing.assert_array_equal(emb.transform(flat[[2, 0]]), emb.transform(flat[:3])[[2, 0]])
    clear_memo()
