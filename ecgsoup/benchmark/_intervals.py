"""Bootstrap intervals of every row and the paired claims, on the same resamples per task."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ecgsoup.benchmark._probes import run_jobs
from ecgsoup.metrics import class_aucs, draw_counts, macro_rule, resample_class_aucs

# --- intervals and the two claims ---------------------------------------------------------


def _row_stats(Y, S, counts, defined):
    """(point estimates, resampled values), each as ``_macro`` gives them."""
    return macro_rule(class_aucs(Y, S)), macro_rule(resample_class_aucs(Y, S, counts), present=defined)


def bootstrap(task_rows, score_store, tasks_built, n_layers, n_bootstrap, seed, n_jobs=None):
    """Point estimates and percentile intervals; the same resamples for every row of a task (paired)."""
    rng = np.random.default_rng(seed)
    rows, claims = [], []
    for task_name, task in tasks_built.items():
        Y = task.Y[task.scored]
        draws = rng.integers(0, len(Y), size=(n_bootstrap, len(Y)))
        counts = draw_counts(draws, len(Y))
        defined = ~np.isnan(class_aucs(Y, np.zeros_like(Y, dtype=float)))
        keys = [(r["probe"], r["representation"]) for r in task_rows if r["task"] == task_name]
        # A "chosen" row shares its scores with the row it chose: each score array is resampled once.
        unique = {id(score_store[(probe, task_name, rep)]): score_store[(probe, task_name, rep)] for probe, rep in keys}
        done = run_jobs({i: (_row_stats, (Y, S, counts, defined)) for i, S in unique.items()}, n_jobs)
        stats = {key: done[id(score_store[(key[0], task_name, key[1])])][0] for key in keys}
        absent = int((~defined).sum())
        for row in (r for r in task_rows if r["task"] == task_name):
            (rule, present), (boot_rule, boot_present) = stats[(row["probe"], row["representation"])]
            rows.append({**row, "auc": rule, "ci_low": np.nanpercentile(boot_rule, 2.5),
                         "ci_high": np.nanpercentile(boot_rule, 97.5), "auc_present": present,
                         "ci_present_low": np.nanpercentile(boot_present, 2.5),
                         "ci_present_high": np.nanpercentile(boot_present, 97.5),
                         "classes": len(task.classes), "classes_absent": absent,
                         "n_train": len(task.train), "n_scored": len(task.scored)})  # fmt: skip
        middle, last = f"layer {(n_layers - 1) // 2}", f"layer {n_layers - 1}"
        for probe in dict.fromkeys(r["probe"] for r in task_rows if r["task"] == task_name):
            pairs = [("best fusion - best single layer", "best fusion (chosen on validation)",
                      "best layer (chosen on validation)"),
                     (f"middle layer ({middle}) - last layer ({last})", middle, last),
                     (f"best layer - last layer ({last})", "best layer (chosen on validation)", last)]  # fmt: skip
            for claim, a, b in pairs:
                (pa, _), (ba, _) = stats[(probe, a)]
                (pb, _), (bb, _) = stats[(probe, b)]
                diff, boot = pa - pb, ba - bb
                # A resample that loses every positive of a class has no AUC for it: left out, as in the rows.
                low, high = np.nanpercentile(boot, [2.5, 97.5]) if np.isfinite(boot).any() else (np.nan, np.nan)
                verdict = "holds" if low > 0 else "reversed" if high < 0 else "not resolved (interval spans 0)"
                claims.append({"probe": probe, "task": task_name, "claim": claim, "difference": diff,
                               "ci_low": low, "ci_high": high, "verdict": verdict})  # fmt: skip
    return pd.DataFrame(rows), pd.DataFrame(claims)
