"""
A grid search over layers
=========================

Which layer of the frozen model is best depends on the task, so treat it as a
hyperparameter: ``GridSearchCV`` over the embedder's ``fusion``, one
:class:`~ecgsoup.fusion.LayerSelector` per layer, with :class:`~ecgsoup.fusion.PPA` (the
average of the twelve blocks) as one more candidate. The embedder's ``memory=`` cache makes
the whole grid cost one pass of the model per record.

Part 1 runs on the bundled LUDB sample. Part 2 follows PTB-XL's protocol (choose inside the
training folds 1-8, score on fold 9) on a PTB-XL subset when it is available, and says why
it is skipped when it is not.
"""

# %%
# Part 1: the bundled sample
# --------------------------
# The same task, folds and model as the previous example: any hypertrophy statement in
# LUDB. Layer 0 is the token embedding (before any attention), layers 1-12 are the blocks.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ecgsoup import PPA, ECGPreprocessor, LayerSelector, LayerwiseEmbedder, load_sample

sample = load_sample()
y = (sample.metadata["hypertrophy"].str.strip() != "").to_numpy().astype(int)
pipe = Pipeline([
    ("prep", ECGPreprocessor(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names)),
    ("embed", LayerwiseEmbedder(memory="ecgsoup-cache", fusion=LayerSelector())),
    ("scale", StandardScaler()),
    ("clf", LogisticRegression(max_iter=2000)),
])
grid = {"embed__fusion": [LayerSelector(layers=layer) for layer in range(13)] + [PPA()]}
cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
search = GridSearchCV(pipe, grid, cv=cv, scoring="roc_auc").fit(sample.X, y)

results = pd.DataFrame(search.cv_results_)
fusions = [params["embed__fusion"] for params in search.cv_results_["params"]]
results["candidate"] = [
    "PPA" if isinstance(fusion, PPA) else f"layer {fusion.layers}" for fusion in fusions
]
results["layer"] = [-1 if isinstance(fusion, PPA) else fusion.layers for fusion in fusions]
print(results[["candidate", "mean_test_score", "std_test_score", "rank_test_score"]]
      .round(3).to_string(index=False))
print("chosen:", results.loc[search.best_index_, "candidate"], f"({search.best_score_:.3f})")

# %%
# One point per layer: the mean ROC AUC over the five test folds, with the standard
# deviation over folds as error bars; PPA and chance as horizontal lines. Differences
# smaller than the error bars are not differences.
layers = results[results["candidate"] != "PPA"]
ppa = results[results["candidate"] == "PPA"].iloc[0]
fig, ax = plt.subplots(figsize=(7, 4))
ax.errorbar(layers["layer"], layers["mean_test_score"],
            yerr=layers["std_test_score"], marker="o", capsize=3, label="one layer")
ax.axhline(ppa["mean_test_score"], color="tab:green", ls="--",
           label=f"PPA (mean of layers 1-12): {ppa['mean_test_score']:.3f}")
ax.axhline(0.5, color="grey", ls=":", label="chance (0.5)")
ax.set(xlabel="layer (0 = token embedding)", xticks=range(13), ylim=(0.3, 1.0),
       ylabel="ROC AUC, 5-fold stratified CV\n(mean ± sd over folds)",
       title=f"LUDB hypertrophy ({y.sum()} of {len(y)} records), bundled model")
ax.legend(loc="lower right")
fig.tight_layout()

# %%
# Part 2: PTB-XL, train on folds 1-8, score on fold 9
# ---------------------------------------------------
# PTB-XL comes with ten folds that keep each patient in one fold. Its labels are SCP
# statements (``NORM``, ``IMI``, ``AFIB``, ...); :mod:`ecgsoup.tasks` maps them to the six
# standard tasks, here the five diagnostic super-classes (NORM, MI, STTC, CD, HYP), a
# multi-label target scored by macro ROC AUC.
#
# The data here is a subset of PTB-XL (1,819 records at 250 Hz, band-passed and z-scored by a
# third party; labels for folds 1-9, fold 10 withheld), found through the
# ``ECGSOUP_SHARED_DATA`` variable. With a PTB-XL download of your own, read it with
# ``read_ptbxl(root, sampling_rate=100)`` instead: ``metadata`` then holds ``scp_codes``
# and ``strat_fold``. To keep this page quick, 100 labelled records of folds 1-8 and 80 of
# fold 9 (less than half of it) are drawn at random.
#
# **Not an independent test.** The bundled model was pretrained, without labels, on the
# 1,442 records of folds 1-8 of this subset, and fold 9 chose its checkpoint (by
# reconstruction loss, also without labels). A score on these folds is an in-distribution
# check of the workflow, not a measure of how the model transfers to new data.
import os
from pathlib import Path

shared = os.environ.get("ECGSOUP_SHARED_DATA")
root = Path(shared) / "ptbxl_zscored_subset" if shared else None
available = root is not None and (root / "labels.csv").exists()
if not available:
    print("Part 2 skipped: the PTB-XL subset was not found (set ECGSOUP_SHARED_DATA to the "
          f"folder that holds ptbxl_zscored_subset/; looked in {root}).")

# %%
# Read the records and the labels; choose by groups of folds inside 1-8.
# ``GroupKFold`` with the fold as the group keeps every PTB-XL fold, and so every patient,
# on one side of each split.
import warnings

from sklearn.exceptions import UndefinedMetricWarning
from sklearn.model_selection import GroupKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import MultiLabelBinarizer

from ecgsoup.evaluate import macro_auc, macro_auc_scorer
from ecgsoup.tasks import bundled_scp_statements, parse_scp_codes, ptbxl_task_labels

if available:
    shards = [np.load(root / f"ptbxl_zscored_250hz_{part}.npz") for part in ("train", "val")]
    X_all = np.concatenate([s["x"] for s in shards]).astype(np.float32) / 1000  # z-scores
    ecg_id = np.concatenate([s["ecg_id"] for s in shards])
    fs, lead_names = float(shards[0]["fs"]), [str(n) for n in shards[0]["lead_names"]]
    table = pd.read_csv(root / "labels.csv", keep_default_na=False).set_index("ecg_id").loc[ecg_id]
    codes = [parse_scp_codes(c) for c in table["scp_codes"]]
    super_labels = ptbxl_task_labels(codes, bundled_scp_statements(), "super")
    fold = table["strat_fold"].to_numpy()
    has_label = np.array([len(labels) > 0 for labels in super_labels])
    rng = np.random.default_rng(0)
    train = rng.choice(np.flatnonzero(has_label & (fold <= 8)), 100, replace=False)
    test = rng.choice(np.flatnonzero(has_label & (fold == 9)), 80, replace=False)
    binarizer = MultiLabelBinarizer().fit([super_labels[i] for i in train])
    Y_train = binarizer.transform([super_labels[i] for i in train])
    Y_test = binarizer.transform([super_labels[i] for i in test])
    print(f"{len(train)} training records (folds 1-8), {len(test)} scored (fold 9), {fs:g} Hz")
    print(pd.DataFrame({"train": Y_train.sum(0), "fold 9": Y_test.sum(0)}, index=binarizer.classes_).T)

    # Preprocessing and embedding learn nothing from the labels, so they run once, here,
    # and the grid search runs on the embeddings (the same scores as the full pipeline).
    # The fusions then read the columns through the embedder's layer specification, which
    # also carries the model's readout (its final LayerNorm).
    embed = Pipeline([
        ("prep", ECGPreprocessor(sampling_rate=fs, lead_names=lead_names)),
        ("embed", LayerwiseEmbedder(memory="ecgsoup-cache")),
    ])
    E_train, E_test = embed.fit_transform(X_all[train]), embed.transform(X_all[test])
    spec = embed["embed"].layer_spec_
    probe = Pipeline([
        ("fuse", LayerSelector(layer_spec=spec)),
        ("scale", StandardScaler()),
        ("clf", OneVsRestClassifier(LogisticRegression(C=0.05, solver="liblinear"))),
    ])
    grid = {"fuse": [LayerSelector(layers=layer, layer_spec=spec) for layer in range(1, 13)]
            + [PPA(layer_spec=spec)]}
    ptbxl_search = GridSearchCV(probe, grid, cv=GroupKFold(n_splits=4), scoring=macro_auc_scorer)
    with warnings.catch_warnings():  # a group of folds can lack a HYP case: that class counts 0.5
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        ptbxl_search.fit(E_train, Y_train, groups=fold[train])
    chosen = ptbxl_search.best_params_
    name = "PPA" if isinstance(chosen["fuse"], PPA) else f"layer {chosen['fuse'].layers}"
    held_out = macro_auc(Y_test, ptbxl_search.predict_proba(E_test))
    print(f"chosen inside folds 1-8: {name} (CV {ptbxl_search.best_score_:.3f}); "
          f"fold 9: macro ROC AUC {held_out:.3f} on {len(test)} records")

# %%
# The inner-CV curve that made the choice, and each candidate refitted on the 100 training
# records and scored once on fold 9 (drawn for reading only: fold 9 chose nothing).
from sklearn.base import clone

if available:
    inner = pd.DataFrame(ptbxl_search.cv_results_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fold9 = [macro_auc(Y_test, clone(probe).set_params(**params).fit(E_train, Y_train).predict_proba(E_test))
                 for params in ptbxl_search.cv_results_["params"]]
    is_layer = [not isinstance(p["fuse"], PPA) for p in ptbxl_search.cv_results_["params"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.errorbar(range(1, 13), inner["mean_test_score"][is_layer], yerr=inner["std_test_score"][is_layer],
                marker="o", capsize=3, label="inside folds 1-8 (4 groups of folds)")
    ax.plot(range(1, 13), np.array(fold9)[is_layer], marker="s", ls="-", color="tab:orange",
            label="fold 9 (held out)")
    ax.axhline(inner["mean_test_score"][~np.array(is_layer)].iloc[0], color="tab:blue", ls="--", lw=1,
               label="PPA, inside folds 1-8")
    ax.axhline(np.array(fold9)[~np.array(is_layer)][0], color="tab:orange", ls="--", lw=1,
               label="PPA, fold 9")
    ax.axhline(0.5, color="grey", ls=":", label="chance (0.5)")
    ax.set(xlabel="layer", xticks=range(1, 13), ylim=(0.3, 1.0),
           ylabel="macro ROC AUC, 5 super-classes\n(CV mean ± sd; fold 9 single score)",
           title=f"PTB-XL subset, {len(train)} training / {len(test)} fold-9 records (in-distribution)")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
