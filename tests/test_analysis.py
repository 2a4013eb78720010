"""Layer analyses (spec section 5) on real LUDB records and a tiny random encoder."""

import copy

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ortho_group
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgsoup import analysis
from ecgsoup.layers import LayerInfo, LayerSpec, Readout
from ecgsoup.leads import ECGSOUP_LEAD_ORDER
from ecgsoup.signal import lead_indices, resample, zscore

N_RECORDS = 16


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One intra-op thread: the tiny model gains nothing from more, and on a busy
    2-core machine OpenMP spin-waiting makes two threads about 3x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def records(ludb):
    """16 real LUDB records, model-ready: 100 Hz, model lead order, z-scored, (n, leads, T)."""
    x = ludb["x"][:N_RECORDS].astype(np.float32) / 1000.0  # microvolts -> mV
    x = resample(x, float(ludb["fs"]), 100.0)
    x = x[..., lead_indices(ludb["lead_names"], ECGSOUP_LEAD_ORDER)]
    return np.ascontiguousarray(zscore(x).transpose(0, 2, 1))


@pytest.fixture(scope="module")
def pooled(records, tiny_model):
    """Pooled layers ``(n, 13, 192)`` of the real records."""
    with torch.inference_mode():
        return tiny_model.pooled_layers(torch.from_numpy(records)).double().numpy()


@pytest.fixture(scope="module")
def layerwise(pooled):
    """The 2-D LayerwiseEmbedder output: ``[h_0 | ... | h_12]``, as its ``layer_spec_`` describes."""
    return pooled.reshape(pooled.shape[0], -1)


def test_records_are_model_ready(records):
    assert records.shape == (N_RECORDS, 12, 1000)
    assert np.allclose(records.mean(axis=-1), 0, atol=1e-4)


# -- cosine similarity ----------------------------------------------------------------------
def test_layer_cosine_similarity(pooled, layerwise, tiny_spec):
    S = analysis.layer_cosine_similarity(layerwise)
    assert S.shape == (13, 13)
    assert np.allclose(S, S.T) and np.allclose(np.diag(S), 1)
    assert np.all(np.abs(S) <= 1 + 1e-12)
    # 2-D layout and 3-D pooled input agree; an explicit per-record loop agrees
    assert np.allclose(S, analysis.layer_cosine_similarity(pooled, n_layers=13))
    cos = [np.dot(h[2], h[9]) / np.linalg.norm(h[2]) / np.linalg.norm(h[9]) for h in pooled]
    assert S[2, 9] == pytest.approx(np.mean(cos))
    assert S.min() < 0.999  # layers are not all the same
    # the embedder's spec gives the layer count (it overrides n_layers); raw h_l, no readout
    assert np.array_equal(analysis.layer_cosine_similarity(layerwise, n_layers=5, layer_spec=tiny_spec), S)


def test_token_cosine_similarity_matches_three_pairs_from_one_batch(records, tiny_model):
    S = analysis.token_cosine_similarity(tiny_model, records, batch_size=5)  # 5 + 5 + 5 + 1
    assert S.shape == (13, 13)
    assert np.allclose(S, S.T) and np.allclose(np.diag(S), 1)
    with torch.inference_mode():
        tokens = tiny_model.forward_layers(torch.from_numpy(records))  # one batch
    for a, b in [(0, 12), (1, 7), (6, 7)]:
        pa, pb = (tokens[k].reshape(N_RECORDS, 12, 22, -1)[:, :, 1:-1] for k in (a, b))
        expected = torch.nn.functional.cosine_similarity(pa, pb, dim=-1).mean().item()
        assert S[a, b] == pytest.approx(expected, abs=1e-6)
    assert S.min() < 0.999  # layers are not all the same


def test_layout_errors(pooled, layerwise, tiny_spec):
    with pytest.raises(ValueError, match=r"2491 columns, which is not 13 layer blocks.*layer_spec=embedder.layer_spec_"):
        analysis.layer_cosine_similarity(layerwise[:, :-5])
    with pytest.raises(ValueError, match="Pass n_layers=13"):
        analysis.linear_cka(pooled, n_layers=12)
    with pytest.raises(ValueError, match="n_layers=0"):
        analysis.linear_cka(layerwise, n_layers=0)
    with pytest.raises(TypeError, match="layer_spec must be a LayerSpec"):
        analysis.linear_cka(layerwise, layer_spec="yes")
    with pytest.raises(TypeError):
        analysis.linear_cka(layerwise, norm="carried")  # the norm parameter is gone
    # layers of different widths (a CNN's stages) cannot be compared one to one
    stages = LayerSpec("c" * 64, (LayerInfo("stem", 96), LayerInfo("stage1", 96))
                       + tuple(LayerInfo(f"stage{i}", 192) for i in range(2, 14)), Readout(), "toy-cnn")  # fmt: skip
    with pytest.raises(ValueError, match=r"toy-cnn differ in width \(96\.\.192\)"):
        analysis.layer_cosine_similarity(layerwise, layer_spec=stages)
    # the spec says how many columns there are: fewer columns are another input, not narrower layers
    with pytest.raises(ValueError, match="2496"):
        analysis.layer_cosine_similarity(layerwise[:, : 13 * 100], layer_spec=tiny_spec)
    with pytest.raises(ValueError, match="NaN"):
        analysis.linear_cka(np.where(layerwise > 3, np.nan, layerwise))


def test_token_cosine_similarity_batched_matches_definition(records, tiny_model):
    S = analysis.token_cosine_similarity(tiny_model, records, batch_size=5)  # 5 + 5 + 5 + 1
    assert S.shape == (13, 13)
    assert np.allclose(S, S.T) and np.allclose(np.diag(S), 1)
    with torch.inference_mode():
        tokens = tiny_model.forward_layers(torch.from_numpy(records))
    patch = [t.reshape(N_RECORDS, 12, 22, -1)[:, :, 1:-1].double() for t in tokens]
    expected = np.array(
        [[torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item() for b in patch]
         for a in patch]
    )
    assert np.allclose(S, expected)
    assert S.min() < 0.99
    # the flat lead-major array of ECGPreprocessor is the same data
    flat = records[:2].reshape(2, -1)
    assert np.allclose(
        analysis.token_cosine_similarity(tiny_model, flat),
        analysis.token_cosine_similarity(tiny_model, records[:2]),
    )


def test_encoder_input_errors(records, tiny_model):
    with pytest.raises(ValueError, match="expects 1000"):
        analysis.token_cosine_similarity(tiny_model, records[:, :, :900])
    with pytest.raises(ValueError, match="13 leads"):
        analysis.attention_entropy(tiny_model, np.concatenate([records, records[:, :1]], axis=1))
    with pytest.raises(ValueError, match="batch_size"):
        analysis.attention_entropy(tiny_model, records, batch_size=0)
    with pytest.raises(ValueError, match="12000"):
        analysis.attention_entropy(tiny_model, records.reshape(N_RECORDS, -1)[:, :-50])


# -- CKA ------------------------------------------------------------------------------------
def _reference_cka(X, Y):
    """CKA from the HSIC definition with the centring matrix (Kornblith et al. 2019, eq. 3)."""
    n = len(X)
    centre = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(A, B):
        return np.trace(A @ centre @ B @ centre)

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def test_linear_cka_definition_and_invariances(pooled, layerwise, tiny_spec):
    C = analysis.linear_cka(layerwise)
    assert np.array_equal(analysis.linear_cka(layerwise, layer_spec=tiny_spec), C)
    assert C.shape == (13, 13)
    assert np.allclose(C, C.T) and np.allclose(np.diag(C), 1)  # CKA(X, X) = 1
    assert np.all((C >= 0) & (C <= 1))
    assert C[3, 11] == pytest.approx(_reference_cka(pooled[:, 3], pooled[:, 11]))

    rotation = ortho_group.rvs(pooled.shape[2], random_state=0)
    rotated = pooled.copy()
    rotated[:, 4] = pooled[:, 4] @ rotation
    assert np.allclose(analysis.linear_cka(rotated), C)
    scaled = pooled.copy()
    scaled[:, 8] *= 37.5
    assert np.allclose(analysis.linear_cka(scaled), C)
    # ... but not invariant to an anisotropic scaling (so the checks above can fail)
    stretched = pooled.copy()
    stretched[:, 4] *= np.linspace(0.01, 10, pooled.shape[2])
    assert not np.allclose(analysis.linear_cka(stretched)[4], C[4], atol=1e-3)


def test_linear_cka_feature_route_equals_gram_route(pooled):
    centred = np.transpose(pooled - pooled.mean(axis=0), (1, 0, 2))
    gram, feature = analysis._cka_by_gram(centred), analysis._cka_by_features(centred)
    assert np.allclose(gram[0], feature[0]) and np.allclose(gram[1], feature[1])
    # more records than dimensions takes the feature route; same answer as the reference
    narrow = pooled[:, :, :8]
    assert analysis.linear_cka(narrow)[2, 5] == pytest.approx(
        _reference_cka(narrow[:, 2], narrow[:, 5])
    )


def test_linear_cka_constant_layer_is_nan(pooled):
    flat = pooled.copy()
    flat[:, 0] = 1.0
    with pytest.warns(RuntimeWarning, match=r"Layers \[0\]"):
        C = analysis.linear_cka(flat)
    assert np.isnan(C[0]).all() and np.isfinite(C[1:, 1:]).all()


# -- attention ------------------------------------------------------------------------------
def test_attention_entropy_bounds_masses_and_batching(records, tiny_model):
    df = analysis.attention_entropy(tiny_model, records, batch_size=6)  # 6 + 6 + 4
    assert len(df) == 12 * 3
    assert set(df["layer"]) == set(range(1, 13)) and set(df["head"]) == {0, 1, 2}
    log_s = np.log(12 * 22)
    assert np.allclose(df["max_entropy"], log_s)
    assert ((df["entropy_mean"] >= 0) & (df["entropy_mean"] <= log_s + 1e-9)).all()
    assert (df["entropy_std"] >= 0).all()
    masses = df[["within_lead_mass", "cross_lead_mass", "sep_mass"]]
    assert ((masses >= 0) & (masses <= 1)).all().all()
    assert np.allclose(masses.sum(axis=1), 1, atol=1e-6)

    # every (layer, head) against the encoder's own attention maps, here of 4 records
    few = records[:4]
    df = analysis.attention_entropy(tiny_model, few, batch_size=3)  # 3 + 1
    with torch.inference_mode():
        maps = torch.stack(tiny_model.attention_weights(torch.from_numpy(few))).double()
    patch = [c * 22 + p for c in range(12) for p in range(1, 21)]
    rows = maps[:, :, :, patch].numpy()  # (layer, record, head, query, key)
    entropy = -(rows * np.log(np.where(rows > 0, rows, 1))).sum(-1)
    own_lead = np.zeros((240, 12 * 22), dtype=bool)
    for q, c in enumerate(np.repeat(np.arange(12), 20)):
        own_lead[q, c * 22 + 1 : c * 22 + 21] = True
    sep = np.zeros(12 * 22, dtype=bool)
    sep[0::22] = sep[21::22] = True
    expected = {
        "entropy_mean": entropy.mean(axis=(1, 3)),
        "entropy_std": entropy.std(axis=(1, 3)),
        "within_lead_mass": (rows * own_lead).sum(-1).mean(axis=(1, 3)),
        "sep_mass": rows[..., sep].sum(-1).mean(axis=(1, 3)),
    }
    for column, values in expected.items():
        assert np.allclose(df[column], values.ravel()), column  # rows are layer-major
    assert df["entropy_std"].max() > 0.01  # real records: entropy varies across queries


def test_uniform_attention_has_maximal_entropy(records, tiny_model):
    """Zero query/key projections give uniform attention: H = log S, masses = token shares."""
    uniform = copy.deepcopy(tiny_model)
    inner = uniform.config.heads * uniform.config.dim_head
    with torch.no_grad():
        for block in uniform.blocks:
            block.qkv.weight[: 2 * inner] = 0
            block.qkv.bias[: 2 * inner] = 0
    leads = 6  # fewer leads than the model has: S = 6 * 22
    x = records[:4, :leads]
    for queries in ("patch", "all"):
        df = analysis.attention_entropy(uniform, x, queries=queries)
        n_tokens = leads * 22
        assert np.allclose(df["entropy_mean"], np.log(n_tokens))
        assert np.allclose(df["entropy_std"], 0, atol=1e-6)
        assert np.allclose(df["entropy_normalised"], 1)
        assert np.allclose(df["within_lead_mass"], 20 / n_tokens)
        assert np.allclose(df["cross_lead_mass"], (leads - 1) * 20 / n_tokens)
        assert np.allclose(df["sep_mass"], 2 * leads / n_tokens)
    with pytest.raises(ValueError, match="queries"):
        analysis.attention_entropy(uniform, x, queries="sep")


def test_analyses_leave_encoder_mode_alone(records, tiny_model):
    model = copy.deepcopy(tiny_model).train()
    analysis.attention_entropy(model, records[:2])
    assert model.training


# -- PMA gate -------------------------------------------------------------------------------
def test_gate_weight_distribution(layerwise, ludb, shared_data, tiny_spec, tmp_path):
    pma = pytest.importorskip("ecgsoup.pma")
    labels = pd.read_csv(shared_data / "ludb" / "ludb_labels.csv").set_index("record_id")
    y = (labels.loc[ludb["record_id"][:N_RECORDS], "axis"] == "left axis deviation").to_numpy()
    estimator = pma.PMAClassifier(max_iter=10, random_state=0, layer_spec=tiny_spec).fit(layerwise, y)
    summary = analysis.gate_weight_distribution(estimator, layerwise)
    weights = estimator.gate_weights(layerwise)
    assert list(summary["layer"]) == list(range(1, 13)) and summary.attrs["n_records"] == N_RECORDS
    assert np.allclose(summary["mean"], weights.mean(axis=0))
    assert np.allclose(summary["mean"], estimator.gate_weights_["mean"])  # fitted on the same rows
    assert summary["mean"].sum() == pytest.approx(1)
    assert summary["argmax_fraction"].sum() == pytest.approx(1)
    ordered = summary[["min", "q05", "q25", "median", "q75", "q95", "max"]].to_numpy()
    assert np.all(np.diff(ordered, axis=1) >= -1e-12)
    # a Pipeline holding the PMA is unwrapped; earlier steps transform X first
    pipe = make_pipeline(pma.PMA(max_iter=5, random_state=0, layer_spec=tiny_spec), LogisticRegression())
    pipe.fit(layerwise, y)
    from_pipe = analysis.gate_weight_distribution(pipe, layerwise)
    assert np.allclose(from_pipe["mean"], pipe[0].gate_weights(layerwise).mean(axis=0))
    fig = analysis.plot_gate_weights(summary, path=tmp_path / "gate.png")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert (tmp_path / "gate.png").read_bytes()[:4] == b"\x89PNG"


def test_gate_weight_distribution_rejects_non_pma(layerwise):
    with pytest.raises(TypeError, match="gate_weights"):
        analysis.gate_weight_distribution(StandardScaler().fit(layerwise), layerwise)


# -- plots ----------------------------------------------------------------------------------
def test_plots_are_saved_as_png(layerwise, records, tiny_model, tmp_path):
    S = analysis.layer_cosine_similarity(layerwise)
    fig = analysis.plot_similarity_matrix(S, "Cosine similarity", path=tmp_path / "cos.png")
    assert isinstance(fig, matplotlib.figure.Figure)
    framed = pd.DataFrame(analysis.linear_cka(layerwise), index=[f"L{i}" for i in range(13)])
    fig = analysis.plot_similarity_matrix(framed, "Linear CKA", path=tmp_path / "cka.png")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][:2] == ["L0", "L1"]
    df = analysis.attention_entropy(tiny_model, records[:2])
    analysis.plot_attention_entropy(df, path=tmp_path / "entropy.png")
    for name in ("cos", "cka", "entropy"):
        assert (tmp_path / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="square"):
        analysis.plot_similarity_matrix(np.ones((3, 4)), "x")
    with pytest.raises(ValueError, match="attention_entropy"):
        analysis.plot_attention_entropy(df.drop(columns="sep_mass"))
    with pytest.raises(ValueError, match="gate_weight_distribution"):
        analysis.plot_gate_weights(df)
