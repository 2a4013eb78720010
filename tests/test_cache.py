"""The embedding cache: its names, and files that appear complete or not at all."""

import os

import joblib
import numpy as np
import pytest

from ecgsoup import cache


def test_old_cache_names_warn_and_point_at_the_new_ones():
    for old, new in [("EmbeddingStore", "EmbeddingCache"), ("STORE_FOLDER", "CACHE_FOLDER"),
                     ("store_folder", "cache_folder")]:  # fmt: skip
        with pytest.warns(FutureWarning, match=rf"ecgsoup.cache.{old} is deprecated .* ecgsoup.cache.{new}"):
            assert getattr(cache, old) is getattr(cache, new)
    with pytest.raises(AttributeError):
        cache.NoSuchName  # noqa: B018


def test_cache_files_are_whole_arrays_and_leave_no_temporary_files(tmp_path):
    memory = joblib.Memory(tmp_path, verbose=0)
    embeddings = cache.EmbeddingCache(memory, cache.context_key(model="m"))
    values = {"a" * 64: np.arange(5, dtype=np.float32), "b" * 64: np.ones(3, np.float32)}
    embeddings.put_many(values)
    folder = os.path.join(cache.cache_folder(memory), embeddings.context)
    assert sorted(os.listdir(folder)) == ["a" * 64 + ".npy", "b" * 64 + ".npy"]
    cache.clear_memo()  # read back from the files, not the memo
    found = embeddings.get_many(list(values))
    np.testing.assert_array_equal(found[0], values["a" * 64])
    np.testing.assert_array_equal(found[1], values["b" * 64])
