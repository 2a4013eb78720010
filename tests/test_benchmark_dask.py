"""The PTB-XL benchmark spread over a local Dask cluster gives the numbers of one process."""

import pandas as pd
import pytest

from ecgsoup.benchmark import ptbxl


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_same_results(shared_data):
    pytest.importorskip("distributed")
    settings = dict(max_records=120, tasks=("super", "rhythm"), probes=("logistic", "mlp"), features=False,
                    random_baseline=False, pma=False, n_bootstrap=100, verbose=False)  # fmt: skip
    subset = shared_data / "ptbxl_zscored_subset"
    alone = ptbxl(subset, **settings)
    spread = ptbxl(subset, workers=2, **settings)
    pd.testing.assert_frame_equal(alone.table, spread.table)
    pd.testing.assert_frame_equal(alone.claims, spread.claims)
    assert set(spread.timings["probes"]) == {"super", "rhythm"}
