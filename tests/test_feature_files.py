import pickle

import numpy as np
import pytest

from artemis_cli.data.feature_files import UnsafePickleError, load_feature, safe_unpickle_array, save_feature
from artemis_cli.errors import InputError


@pytest.mark.parametrize("fmt", ["pkl", "npy", "safetensors"])
def test_round_trip_each_format(tmp_path, fmt):
    array = np.random.default_rng(0).standard_normal((356, 8)).astype(np.float16)
    path = tmp_path / f"clip.{fmt}"
    save_feature(path, array)
    loaded = load_feature(path)
    assert loaded.dtype == np.float16 and loaded.shape == (356, 8)
    np.testing.assert_array_equal(loaded, array)
    assert [p.name for p in tmp_path.iterdir()] == [f"clip.{fmt}"]  # no temp file left behind


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_published_pickles_of_every_protocol_load(protocol):
    array = np.arange(12, dtype=np.float16).reshape(3, 4)
    np.testing.assert_array_equal(safe_unpickle_array(pickle.dumps(array, protocol=protocol)), array)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(UnsafePickleError) as info:
        load_feature(path)
    assert "evil.pkl" in info.value.message
    assert "system" in info.value.message and "not allowed" in info.value.message
    assert not marker.exists()


def test_pickle_of_a_list_or_object_array_is_rejected(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(InputError, match="holds list, expected a numpy array"):
        load_feature(path)
    obj = np.array([1, "a"], dtype=object)
    with pytest.raises(InputError, match="dtype object"):
        safe_unpickle_array(pickle.dumps(obj))


def test_truncated_pickle_and_npy_with_pickled_objects(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps(np.zeros((4, 4), np.float16))[:20])
    with pytest.raises(InputError, match="cut.pkl: not a readable feature pickle"):
        load_feature(path)
    npy = tmp_path / "obj.npy"
    np.save(npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="obj.npy: not a plain .npy array"):
        load_feature(npy)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(InputError, match="feature file not found"):
        load_feature(tmp_path / "nope.pkl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(InputError, match="unknown feature file type"):
        load_feature(tmp_path / "x.txt")


def test_safetensors_with_several_tensors_needs_the_features_key(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "two.safetensors"
    save_file({"a": np.zeros(2, np.float16), "b": np.ones(2, np.float16)}, str(path))
    with pytest.raises(InputError, match="expected one named 'features'"):
        load_feature(path)
