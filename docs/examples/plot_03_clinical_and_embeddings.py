"""
Clinical features plus embeddings
=================================

What a cardiologist reads off an ECG first (rate, rhythm variability, P waves, intervals,
axis) is a strong baseline, and often a good partner to the foundation model's embedding.
This example computes the 14 clinical features of
:class:`~ecgsoup.features.ECGFeatures` on the bundled LUDB sample, then compares, with the
same folds and the same logistic regression: the features alone, the embedding alone (PPA),
and both side by side, each block balanced so that 14 columns are not drowned by 192.
"""

# %%
# The clinical features
# ---------------------
# LUDB's amplitudes were range-normalised by its publisher, so ``units="normalized"``: the
# per-lead amplitude columns are then left out and the timing features remain. A measurement
# that fails (no P wave found, too noisy for R peaks) is NaN, never a fill; ``report_`` says
# which step failed for which record.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ecgsoup import ECGFeatures, load_sample

sample = load_sample()
features = ECGFeatures(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names, units="normalized")
F = features.set_output(transform="pandas").fit_transform(sample.X)
print(F.shape)
print(F.head(3).round(2).T)
print("records with a failed step:", (features.report_["failed_steps"] != "").sum(), "of", len(F))
print("NaN per column:", F.isna().sum()[F.isna().sum() > 0].to_dict())

# %%
# The embedding
# -------------
# The same cached pipeline as in the first example; PPA, the embedder's fusion, averages the
# twelve blocks.
from ecgsoup import PPA, ECGPreprocessor, LayerwiseEmbedder

prep = ECGPreprocessor(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names)
Z = LayerwiseEmbedder(memory="ecgsoup-cache", fusion=PPA()).fit_transform(prep.fit_transform(sample.X))
print("embedding:", Z.shape)

# %%
# Three probes, same folds
# ------------------------
# Neither block learns from the labels (the features are measurements, the model is frozen),
# so both are computed once, above. Everything that does learn (the median imputation, the
# scaling, the block balance of :func:`~ecgsoup.hybrid.balanced_columns` and the logistic
# regression) sits inside the cross-validated pipeline and sees only the training folds.
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgsoup.hybrid import balanced_columns
from ecgsoup.tasks import ludb_targets

targets = ludb_targets(sample.metadata, ("atrial_fibrillation", "hypertrophy"))
probes = {
    "clinical features (14)": (
        make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                      LogisticRegression(max_iter=2000)), F.to_numpy()),
    f"embedding, PPA ({Z.shape[1]})": (
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), Z),
    "both, blocks balanced": (
        make_pipeline(balanced_columns([F.shape[1], Z.shape[1]]), LogisticRegression(max_iter=2000)),
        np.hstack([F.to_numpy(), Z])),
}
cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
rows = []
for task, y in targets.items():
    for name, (probe, X) in probes.items():
        scores = cross_val_score(probe, X, y, cv=cv, scoring="roc_auc")
        rows.append({"task": f"{task} ({y.sum()} of {len(y)})", "probe": name,
                     "mean": scores.mean(), "sd": scores.std()})
table = pd.DataFrame(rows)
print(table.pivot(index="probe", columns="task", values="mean").round(3))

# %%
# Mean ROC AUC over the five test folds, with the standard deviation over folds. Atrial
# fibrillation is defined by what the features measure (irregular RR intervals, no P
# waves); hypertrophy is a morphology statement, and with range-normalised amplitudes no
# voltage criterion is available to either block.
fig, ax = plt.subplots(figsize=(7.5, 4))
tasks, names = table["task"].unique(), list(probes)
width = 0.8 / len(names)
for k, name in enumerate(names):
    part = table[table["probe"] == name]
    ax.bar(np.arange(len(tasks)) + (k - 1) * width, part["mean"], width, yerr=part["sd"], capsize=3, label=name)
ax.axhline(0.5, color="grey", ls=":", label="chance (0.5)")
ax.set(xticks=range(len(tasks)), xticklabels=tasks, ylim=(0.3, 1.05),
       ylabel="ROC AUC, 5-fold stratified CV\n(mean ± sd over folds)",
       title="LUDB, bundled model: clinical features, embedding, both")
ax.legend(loc="lower right", fontsize="small")
fig.tight_layout()

# %%
# One transformer for new data
# ----------------------------
# :func:`~ecgsoup.hybrid.hybrid_features` is the same combination as one scikit-learn
# transformer from raw ECGs: the clinical block (features, imputation, scaling) beside an
# :func:`~ecgsoup.hybrid.embedding_block` (preprocessor, frozen model, layer choice), each
# scaled to a total variance of 1. Put it before a classifier in a ``Pipeline`` to score
# new records in one call. (Inside ``cross_val_score`` it recomputes the clinical features
# in every fold, which is slower than the precomputed version above but gives the same
# kind of score.) Here it is fitted on the first 40 records only, to show its output.
from ecgsoup.hybrid import embedding_block, hybrid_features

hybrid = hybrid_features(
    ECGFeatures(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names, units="normalized"),
    embedding_block(sample.sampling_rate, sample.lead_names, layers="middle", memory="ecgsoup-cache"),
)
H = hybrid.fit_transform(sample.X[:40])
names_out = hybrid.get_feature_names_out()
clinical = np.array([n.startswith("clinical__") for n in names_out])
print(H.shape, "=", clinical.sum(), "clinical +", (~clinical).sum(), "embedding columns")
print("total variance per block:", round(float(H[:, clinical].var(0).sum()), 3),
      round(float(H[:, ~clinical].var(0).sum()), 3))
