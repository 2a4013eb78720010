"""The PTB-XL benchmark: six standard tasks, every layer, the fusions and honest baselines.

:func:`ptbxl` runs the standard protocol of the PTB-XL benchmark (Strodthoff
et al. 2021) on the frozen encoder:

* **Tasks** from ``scp_statements.csv``: ``all`` (71 statements), ``diag``
  (44), ``sub`` (23 diagnostic sub-classes), ``super`` (5 super-classes),
  ``form`` (19) and ``rhythm`` (12); every key of a record's ``scp_codes``
  counts, whatever its likelihood.  A task keeps the records with at least one
  of its labels, and the classes that occur in the labelled records.
* **Split**: folds 1-8 train, fold 9 validation, fold 10 test.  When fold 10
  has no labels (the z-scored subset withholds them on purpose), fold 9 is the
  scored fold and every choice (probe strength, layer, fusion) is made by
  two-fold cross-validation inside folds 1-8 (folds 1-4 against 5-8), never
  on the scored fold.  The output says which fold was scored and how choices
  were made.
* **Representations**: every single layer, the layer chosen on validation,
  PPA, PMA (gate trained on the training folds), the same architecture with
  random weights (its layer chosen on validation among every fourth layer),
  clinical ECG features
  (:class:`ecgsoup.features.ECGFeatures`) and a hybrid of those features with
  the chosen layer.
* **Probes**: a standardised logistic regression (one-vs-rest), with ``C``
  chosen on validation (each training split standardised once for every ``C``); and the ECG-Soup MLP head
  (:class:`ecgsoup.mlp_head.MLPHeadClassifier`: BatchNorm, Dropout 0.25,
  Linear 256, ReLU, BatchNorm, Dropout 0.5, Linear; AdamW lr 1e-3, weight
  decay 0.05, batch 64, up to 100 epochs with early stopping on a 10 % hold-out
  of the training folds).  The fits are independent jobs for joblib
  (``n_jobs``) or a Dask cluster (``client``).
* **Metric**: macro ROC AUC in two variants, the ECG-Soup rule (a class with
  no positive or no negative record in the scored fold counts 0.5) and
  "classes present" (those classes are left out), each with a bootstrap 95 %
  interval over the scored records (a class that a resample happens to lose is
  left out of that resample), plus paired bootstrap intervals for "best
  fusion minus best single layer", "middle layer minus last layer" and "best
  layer (chosen on validation) minus last layer".

Each record goes through the backbone once (embeddings are cached in
``out/cache``); the wall time is reported per phase (read, preprocess, embed,
embed the random twin, features, probes, bootstrap, write) and the probe fits'
seconds per task and probe.
"""

from __future__ import annotations

from ecgsoup.benchmark._data import (
    DEFAULT_CS,
    TEST_FOLD,
    TRAIN_FOLDS,
    VALIDATION_FOLD,
    PTBXLData,
    load_ptbxl_benchmark_data,
)
from ecgsoup.benchmark._logistic import logistic_scores, one_vs_rest_logistic
from ecgsoup.benchmark._protocol import ptbxl
from ecgsoup.benchmark._results import (
    PTBXLResult,
    json_records,
    plot_ptbxl_summary,
    plot_ptbxl_task,
    ptbxl_result_from_json,
    read_ptbxl_results,
    result_cell,
    write_ptbxl_results,
)
from ecgsoup.metrics import class_aucs, resample_class_aucs

__all__ = [
    "PTBXLData",
    "PTBXLResult",
    "load_ptbxl_benchmark_data",
    "plot_ptbxl_summary",
    "plot_ptbxl_task",
    "ptbxl",
    "ptbxl_result_from_json",
    "read_ptbxl_results",
    "class_aucs",
    "resample_class_aucs",
    "write_ptbxl_results",
    "json_records",
    "result_cell",
    "TRAIN_FOLDS",
    "VALIDATION_FOLD",
    "TEST_FOLD",
    "DEFAULT_CS",
    "one_vs_rest_logistic",
    "logistic_scores",
]
