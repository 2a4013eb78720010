"""
From files to a cross-validated score
=====================================

The whole workflow on recordings stored as files: read a folder of WFDB records, join a
labels table by record id, and cross-validate a pipeline that ends in a logistic regression
on the frozen model's layer average (PPA).

The records are the 200 real LUDB ECGs bundled with ecgsoup. So that this page starts from
files, as your study does, step 0 writes them as a folder of WFDB records (``.hea`` +
``.dat``, one pair per ECG) with a ``labels.csv`` beside it. With your own data, skip step
0 and pass your folder to :func:`~ecgsoup.io.read_dataset` (or use
:func:`~ecgsoup.io.read_ptbxl` for a PTB-XL download and
:func:`~ecgsoup.io.read_challenge` for PhysioNet Challenge files).
"""

# %%
# 0. Write the bundled sample as WFDB files
# -----------------------------------------
# The bundled signals are whole microvolts, written as such (units ``uV``, gain 1): the files
# hold exactly the bundled samples.
import tempfile
from pathlib import Path

import numpy as np
import wfdb

from ecgsoup import load_sample

sample = load_sample()
folder = Path(tempfile.mkdtemp(prefix="ecgsoup-example-")) / "ludb-wfdb"
folder.mkdir()
for record_id, signal in zip(sample.record_ids, sample.X):
    wfdb.wrsamp(
        f"ludb{record_id:03d}", fs=sample.sampling_rate, units=["uV"] * 12,
        sig_name=list(sample.lead_names), p_signal=np.round(signal.astype("float64") * 1000),
        fmt=["16"] * 12, adc_gain=[1.0] * 12, baseline=[0] * 12, write_dir=str(folder),
    )
labels = sample.metadata[["record_id", "rhythm_primary", "hypertrophy"]].copy()
labels["record_id"] = [f"ludb{r:03d}" for r in labels["record_id"]]
labels.to_csv(folder / "labels.csv", index=False)
print(sorted(p.name for p in folder.iterdir())[:4], "...", len(list(folder.glob("*.hea"))), "headers")
print(open(folder / "labels.csv").read().splitlines()[:4])

# %%
# 1. Read the folder
# ------------------
# :func:`~ecgsoup.io.read_dataset` reads every WFDB record under the folder into one
# :class:`~ecgsoup.io.ECGDataset`: signals in mV, time-major ``(records, samples, leads)``,
# the canonical lead names and the sampling rate from the headers. An unreadable record would
# be skipped with a warning and listed in ``dataset.errors``.
from ecgsoup.io import read_dataset

dataset = read_dataset(folder)
print(dataset)
print("skipped:", dataset.errors)
print("identical to the bundled arrays:", np.array_equal(dataset.X, sample.X))

# %%
# What the model will read: one of the records, as read back from its file.
import matplotlib.pyplot as plt

record = 0
seconds = np.arange(dataset.X.shape[1]) / dataset.sampling_rate
fig, axes = plt.subplots(6, 2, figsize=(9, 6.5), sharex=True, sharey=True)
for lead, ax in enumerate(axes.T.ravel()):
    ax.plot(seconds, dataset.X[record, :, lead], lw=0.8, color="black")
    ax.set_ylabel(dataset.lead_names[lead], rotation=0, labelpad=14)
    ax.set_yticks([])
for ax in axes[-1]:
    ax.set_xlabel("time (s)")
fig.suptitle(f"record {dataset.record_ids[record]}, {dataset.sampling_rate:g} Hz (amplitudes range-normalised)")
fig.tight_layout()

# %%
# 2. Join the labels by record id
# -------------------------------
# The target: any hypertrophy statement. An empty cell in the ``hypertrophy`` column means
# "none", so here it is the negative class (``keep_default_na=False`` keeps it an empty
# string instead of NaN). The labels are looked up by the ids the reader returned, so the
# order of the CSV does not matter.
import pandas as pd

table = pd.read_csv(folder / "labels.csv", keep_default_na=False).set_index("record_id")
table = table.loc[dataset.record_ids]
y = (table["hypertrophy"].str.strip() != "").to_numpy().astype(int)
print(f"{y.sum()} records with hypertrophy, {(1 - y).sum()} without")

# %%
# 3. The pipeline and its cross-validated score
# ---------------------------------------------
# :class:`~ecgsoup.preprocessing.ECGPreprocessor` is told the rate and the lead names (never
# guessed), reorders the leads into the model's order and resamples;
# :class:`~ecgsoup.embedding.LayerwiseEmbedder` runs the bundled frozen model, pools every
# layer and hands them to its ``fusion``, here :class:`~ecgsoup.fusion.PPA`, which averages
# the twelve blocks and applies the model's final LayerNorm; only the logistic regression
# learns from the labels. ``memory=`` caches each record's embedding, so the five
# folds (and the next examples) run the model once per record.
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecgsoup import PPA, ECGPreprocessor, LayerwiseEmbedder

pipe = make_pipeline(
    ECGPreprocessor(sampling_rate=dataset.sampling_rate, lead_names=dataset.lead_names),
    LayerwiseEmbedder(memory="ecgsoup-cache", fusion=PPA()),
    StandardScaler(),
    LogisticRegression(max_iter=2000),
)
cv = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
scores = cross_val_score(pipe, dataset.X, y, cv=cv, scoring="roc_auc")
print("ROC AUC per fold:", np.round(scores, 3))
print(f"mean {scores.mean():.3f} +/- {scores.std():.3f} (standard deviation over the 5 folds)")

# %%
# The five test folds, with chance (0.5) for reference. Five folds of 40 records are a
# small test: a difference smaller than the spread between folds is not a difference.
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(range(1, 6), scores, color="tab:blue")
ax.axhline(scores.mean(), color="tab:blue", ls="--", lw=1, label=f"mean {scores.mean():.3f}")
ax.axhline(0.5, color="grey", ls=":", lw=1, label="chance (0.5)")
ax.set(xlabel="test fold", ylabel="ROC AUC, 5-fold stratified CV", ylim=(0.3, 1.0),
       title=f"LUDB hypertrophy ({y.sum()} of {len(y)}): PPA + logistic regression")
ax.legend(loc="lower right")
fig.tight_layout()
