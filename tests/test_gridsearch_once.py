"""A grid search over fusions runs the backbone once per record (issue 3, item 5).

``GridSearchCV`` over ``embed__fusion`` (LayerSelector of layers 1..12, and
PPA) with 5 folds fits the pipeline 65 times (plus the refit), and each fit
transforms both the training and the test part of its fold.  With
``LayerwiseEmbedder(memory=...)`` every record must still pass through the
backbone exactly once.
"""

import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline

from ecgsoup import LayerwiseEmbedder
from ecgsoup.backbones.stmem import STMEMEncoder
from ecgsoup.cache import clear_memo
from ecgsoup.fusion import PPA, LayerSelector
from ecgsoup.leads import ECGSOUP_LEAD_ORDER
from ecgsoup.signal import lead_indices, resample, zscore

N_PER_CLASS = 20
TINY = "random:ecgsoup-100hz-tiny"  # untrained: the test counts passes, not accuracy


@pytest.fixture(scope="module")
def ludb_task(ludb, shared_data):
    """40 real LUDB records, model-ready (flat, 100 Hz), with a sinus-rhythm target."""
    labels = pd.read_csv(shared_data / "ludb" / "ludb_labels.csv")
    assert labels["record_id"].tolist() == ludb["record_id"].tolist()
    sinus = (labels["rhythm_primary"] == "Sinus rhythm").to_numpy()
    chosen = np.r_[np.flatnonzero(sinus)[:N_PER_CLASS], np.flatnonzero(~sinus)[:N_PER_CLASS]]
    chosen = np.sort(chosen)
    x = resample(ludb["x"][chosen].astype(np.float32) / 1000.0, float(ludb["fs"]), 100.0)
    x = x[:, :, lead_indices(list(ludb["lead_names"]), ECGSOUP_LEAD_ORDER)].transpose(0, 2, 1)
    return np.ascontiguousarray(x).reshape(len(chosen), -1), sinus[chosen].astype(int)


def _window_hash(window: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(window, dtype=np.float32).tobytes()).hexdigest()


def test_gridsearch_over_fusions_forwards_each_record_once(ludb_task, tmp_path, monkeypatch):
    X, y = ludb_task
    # Each record is one 10 s window; identify it by its z-scored samples.
    record_of = {_window_hash(zscore(r.reshape(12, 1000), axis=-1)): i for i, r in enumerate(X)}
    assert len(record_of) == len(X)
    forwarded = np.zeros(len(X), dtype=int)
    original = STMEMEncoder.pooled_layers

    def counting(self, batch):
        for window in batch.numpy():
            forwarded[record_of[_window_hash(window)]] += 1
        return original(self, batch)

    monkeypatch.setattr(STMEMEncoder, "pooled_layers", counting)
    clear_memo()
    pipe = Pipeline(
        [
            ("embed", LayerwiseEmbedder(model=TINY, memory=tmp_path / "cache", fusion=LayerSelector())),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    )
    fusions = [LayerSelector(layers=layer) for layer in range(1, 13)] + [PPA()]
    cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    search = GridSearchCV(pipe, {"embed__fusion": fusions}, cv=cv).fit(X, y)

    assert len(search.cv_results_["params"]) == 13
    assert forwarded.tolist() == [1] * len(X), "every record through the backbone exactly once"
    # the candidates really differ: the grid is not searching copies of one input
    assert np.ptp(search.cv_results_["mean_test_score"]) > 0

    # The cached embeddings are the right ones: the same search on embeddings
    # computed up front, each fusion given the embedder's spec (memo hits, so
    # still no forward), scores identically.
    embed = LayerwiseEmbedder(model=TINY, memory=tmp_path / "cache").fit(X)
    E, spec = embed.transform(X), embed.layer_spec_
    assert forwarded.sum() == len(X)
    direct = GridSearchCV(
        Pipeline([("fusion", LayerSelector()), ("clf", LogisticRegression(max_iter=2000))]),
        {"fusion": [clone(fusion).set_params(layer_spec=spec) for fusion in fusions]},
        cv=cv,
    ).fit(E, y)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], direct.cv_results_["mean_test_score"]
    )
    best = search.best_estimator_.named_steps["embed"]
    assert best.fusion_.layer_spec_.same_model(spec)
    assert type(best.fusion_) is type(search.best_params_["embed__fusion"])
    clear_memo()
