"""Shared fixtures: the real ECG data beside the checkout, and tiny models.

Real records live in ``../shared/data`` (or wherever ``ECGSOUP_SHARED_DATA``
points).  A user's clone has no ``../shared``: tests that need it skip with the
reason; under CI (``CI`` set) a missing folder is an error instead, because CI
always has it.
"""

import os
from pathlib import Path

import numpy as np
import pytest

SHARED_DATA_ENV = "ECGSOUP_SHARED_DATA"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared real-ECG folder (see ../shared/data/README.md)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    path = Path(os.environ.get(SHARED_DATA_ENV, default))
    if not (path / "README.md").exists():
        message = (
            f"real ECG data not found at {path}; set {SHARED_DATA_ENV} to the "
            "folder holding ludb/, ptbxl_sample/, ... to run these tests"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def ludb(shared_data):
    """LUDB: 200 real 12-lead records, 500 Hz, 10 s, microvolts, time-major."""
    data = np.load(shared_data / "ludb" / "ludb_12lead_500hz.npz")
    return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def tiny_model():
    """A randomly initialised ecgsoup-100hz-tiny encoder (never pretrained)."""
    from ecgsoup.models import random_model

    return random_model("ecgsoup-100hz-tiny", seed=0)
