"""Tests for mnist_core.data: every source, every failure message, the offline guard."""

from __future__ import annotations

import contextlib
import gzip
import re
import socket
import sys
import tempfile
import threading
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mnist_core import data
from mnist_core.data import HOW_TO_FIX, MnistData, load_mnist, to_float
from mnist_core.errors import DataError

IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def make_arrays(num_train: int = 6, num_test: int = 4, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (num_train, 28, 28), dtype=np.uint8),
        "y_train": (np.arange(num_train) % 10).astype(np.uint8),
        "x_test": rng.integers(0, 256, (num_test, 28, 28), dtype=np.uint8),
        "y_test": ((np.arange(num_test) + 3) % 10).astype(np.uint8),
    }


def write_npz(path: Path, **overrides: np.ndarray) -> dict[str, np.ndarray]:
    arrays = {**make_arrays(), **overrides}
    np.savez(path, **arrays)
    return arrays


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Real IDX: big-endian uint32 magic and dimensions, then the raw uint8 values."""
    if magic is None:
        magic = 2051 if array.ndim == 3 else 2049
    header = np.array([magic, *array.shape], dtype=">u4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(
    folder: Path, arrays: dict[str, np.ndarray], compress: bool = False, dotted: bool = False
) -> Path:
    folder.mkdir(exist_ok=True)
    for name, stem in IDX_STEMS.items():
        file_name = stem.replace("-idx", ".idx") if dotted else stem
        content = idx_bytes(arrays[name])
        if compress:
            (folder / f"{file_name}.gz").write_bytes(gzip.compress(content))
        else:
            (folder / file_name).write_bytes(content)
    return folder


def assert_arrays_equal(loaded: MnistData, expected: dict[str, np.ndarray]) -> None:
    for name, array in expected.items():
        value = getattr(loaded, name)
        assert value.dtype == np.uint8, name
        np.testing.assert_array_equal(value, array, err_msg=name)


@pytest.fixture
def no_local_mnist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No MNIST_PATH and an empty Keras home, so load_mnist() must use the Keras download."""
    monkeypatch.delenv("MNIST_PATH", raising=False)
    keras_home = tmp_path / "keras_home"
    keras_home.mkdir()
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    return keras_home


@pytest.fixture
def offline(no_local_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """As no_local_mnist, and every connection attempt is refused at once."""

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise OSError("Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return no_local_mnist


# --- reading valid data ---


def test_npz_loads_values_and_source(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    arrays = write_npz(path)

    loaded = load_mnist(path)

    assert_arrays_equal(loaded, arrays)
    assert loaded.x_train.shape == (6, 28, 28)
    assert loaded.y_test.shape == (4,)
    assert loaded.source == str(path.resolve())


def test_loaded_arrays_are_read_only(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    write_npz(path)

    loaded = load_mnist(path)

    with pytest.raises(ValueError, match="read-only"):
        loaded.x_train[0, 0, 0] = 1


def test_other_integer_dtypes_in_range_are_cast_to_uint8(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    arrays = make_arrays()
    write_npz(path, x_train=arrays["x_train"].astype(np.int64), y_test=arrays["y_test"].astype(int))

    loaded = load_mnist(str(path))

    assert_arrays_equal(loaded, arrays)


@pytest.mark.parametrize(
    ("compress", "dotted"),
    [(False, False), (True, False), (False, True), (True, True)],
    ids=["plain", "gz", "dotted", "dotted-gz"],
)
def test_idx_folder_loads(tmp_path: Path, compress: bool, dotted: bool) -> None:
    arrays = make_arrays(num_train=7, num_test=3)
    folder = write_idx_dir(tmp_path / "idx", arrays, compress=compress, dotted=dotted)

    loaded = load_mnist(folder)

    assert_arrays_equal(loaded, arrays)
    assert loaded.source == str(folder.resolve())


@settings(max_examples=25, deadline=None)
@given(
    images=hnp.arrays(np.uint8, st.tuples(st.integers(1, 5), st.just(28), st.just(28))),
    data_strategy=st.data(),
)
def test_idx_round_trip_preserves_every_value(
    images: np.ndarray, data_strategy: st.DataObject
) -> None:
    labels = data_strategy.draw(hnp.arrays(np.uint8, len(images), elements=st.integers(0, 9)))
    # hypothesis runs many examples per test, so it cannot share pytest's tmp_path
    with tempfile.TemporaryDirectory() as folder:
        arrays = {"x_train": images, "y_train": labels, "x_test": images, "y_test": labels}
        loaded = load_mnist(write_idx_dir(Path(folder), arrays))

    assert_arrays_equal(loaded, arrays)


# --- the load cache and the fingerprint ---


def test_loading_the_same_file_twice_returns_the_same_object(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    write_npz(path)

    assert load_mnist(path) is load_mnist(tmp_path / "." / "mnist.npz")


def test_changed_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    write_npz(path)
    first = load_mnist(path)
    changed = write_npz(path, **make_arrays(num_train=9, seed=1))

    second = load_mnist(path)

    assert second is not first
    assert_arrays_equal(second, changed)


def test_fingerprint_depends_on_content_only(tmp_path: Path) -> None:
    arrays = write_npz(tmp_path / "mnist.npz")
    from_npz = load_mnist(tmp_path / "mnist.npz")
    from_idx = load_mnist(write_idx_dir(tmp_path / "idx", arrays))
    changed = dict(arrays, x_test=arrays["x_test"].copy())
    changed["x_test"][0, 0, 0] ^= 1
    from_changed = MnistData(**changed, source="test")

    assert re.fullmatch(r"[0-9a-f]{16}", from_npz.fingerprint)
    assert from_npz.fingerprint == from_idx.fingerprint
    assert from_changed.fingerprint != from_npz.fingerprint


# --- every failure is a DataError that says what to do ---


def expect_data_error(path: Path, pattern: str) -> DataError:
    with pytest.raises(DataError, match=pattern) as caught:
        load_mnist(path)
    message = str(caught.value)
    assert HOW_TO_FIX in message
    return caught.value


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.npz"
    expect_data_error(path, rf"{re.escape(str(path))} \(from the given path\) does not exist")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.touch()
    expect_data_error(path, r"is empty \(0 bytes\)")


def test_truncated_npz(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    write_npz(path)
    path.write_bytes(path.read_bytes()[:500])

    error = expect_data_error(path, rf"Cannot read {re.escape(str(path))} as an \.npz archive")
    assert isinstance(error.__cause__, zipfile.BadZipFile)


def test_corrupt_npz_member_fails_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    write_npz(path)
    content = bytearray(path.read_bytes())
    content[300] ^= 0xFF  # inside x_test's stored pixels; the zip's CRC-32 no longer matches
    path.write_bytes(bytes(content))

    error = expect_data_error(path, r"BadZipFile: Bad CRC-32")
    assert isinstance(error.__cause__, zipfile.BadZipFile)


def test_text_file_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    path.write_text("x_train,y_train\n1,2\n")
    expect_data_error(path, r"not an \.npz")


def test_single_npy_array_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npy"
    np.save(path, make_arrays()["x_train"])
    expect_data_error(path, r"single \.npy array, not an \.npz archive")


def test_pickled_object_array_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    write_npz(path, y_train=np.array([object()] * 6, dtype=object))
    error = expect_data_error(path, r"ValueError: .*allow_pickle=False")
    assert isinstance(error.__cause__, ValueError)


def test_missing_keys_are_named(tmp_path: Path) -> None:
    path = tmp_path / "mnist.npz"
    arrays = make_arrays()
    np.savez(path, x_train=arrays["x_train"], y_train=arrays["y_train"], images=arrays["x_test"])
    expect_data_error(path, r"lacks the arrays x_test, y_test; it has .*images")


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"x_train": np.zeros((6, 28, 27), np.uint8)}, r"x_train has shape \(6, 28, 27\)"),
        (
            {"x_test": np.zeros((4, 784), np.uint8)},
            r"x_test has shape \(4, 784\), expected \(N, 28",
        ),
        ({"y_train": np.zeros((6, 1), np.uint8)}, r"y_train has shape \(6, 1\), expected \(N,\)"),
        ({"x_train": np.zeros((6, 28, 28), np.float32)}, r"x_train has dtype float32"),
        ({"y_test": np.zeros(4, np.float64)}, r"y_test has dtype float64, expected uint8 digits"),
        ({"x_test": np.full((4, 28, 28), 300, np.int16)}, r"x_test has pixel values 300\.\.300"),
        ({"y_train": np.array([0, 1, 2, 3, 4, 10], np.uint8)}, r"y_train has labels 0\.\.10"),
        ({"y_test": np.array([-1, 0, 1, 2], np.int8)}, r"y_test has labels -1\.\.2, expected 0"),
        ({"y_train": np.zeros(5, np.uint8)}, r"x_train has 6 images but y_train has 5 labels"),
        (
            {"x_test": np.zeros((0, 28, 28), np.uint8), "y_test": np.zeros(0, np.uint8)},
            r"x_test is empty",
        ),
    ],
    ids=[
        "image-width",
        "flat-images",
        "label-shape",
        "float-images",
        "float-labels",
        "pixel-range",
        "label-too-big",
        "label-negative",
        "count-mismatch",
        "empty-split",
    ],
)
def test_invalid_arrays_are_rejected(tmp_path: Path, overrides: dict, pattern: str) -> None:
    path = tmp_path / "mnist.npz"
    write_npz(path, **overrides)
    expect_data_error(path, rf"{re.escape(str(path))}: {pattern}")


def test_idx_folder_missing_a_file(tmp_path: Path) -> None:
    folder = write_idx_dir(tmp_path / "idx", make_arrays())
    (folder / "t10k-labels-idx1-ubyte").unlink()
    expect_data_error(folder, r"has no t10k-labels-idx1-ubyte \(plain or \.gz\)")


def test_idx_wrong_magic(tmp_path: Path) -> None:
    arrays = make_arrays()
    folder = write_idx_dir(tmp_path / "idx", arrays)
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(arrays["y_train"], magic=2051))
    expect_data_error(
        folder,
        r"train-labels-idx1-ubyte is not an IDX label file: magic number 2051, expected 2049",
    )


def test_idx_counts_inconsistent_between_images_and_labels(tmp_path: Path) -> None:
    arrays = make_arrays()
    folder = write_idx_dir(tmp_path / "idx", arrays)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(arrays["y_test"][:3]))
    expect_data_error(
        folder, r"t10k-images-idx3-ubyte holds 4 images but t10k-labels-idx1-ubyte holds 3 labels"
    )


def test_idx_truncated_data(tmp_path: Path) -> None:
    folder = write_idx_dir(tmp_path / "idx", make_arrays())
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    expected_size = 16 + 6 * 28 * 28
    expect_data_error(
        folder,
        rf"has {expected_size - 10} bytes but its header \(6, 28, 28\) needs {expected_size}",
    )


def test_idx_header_too_short(tmp_path: Path) -> None:
    folder = write_idx_dir(tmp_path / "idx", make_arrays())
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03")
    expect_data_error(folder, r"has 4 bytes, too short for an IDX image header")


def test_idx_images_of_wrong_size(tmp_path: Path) -> None:
    arrays = make_arrays()
    folder = write_idx_dir(tmp_path / "idx", arrays)
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((6, 32, 32), np.uint8)))
    expect_data_error(folder, r"x_train has shape \(6, 32, 32\), expected \(N, 28, 28\)")


def test_idx_truncated_gzip(tmp_path: Path) -> None:
    folder = write_idx_dir(tmp_path / "idx", make_arrays(), compress=True)
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-12])
    error = expect_data_error(folder, r"Cannot read .*train-labels-idx1-ubyte\.gz \(EOFError")
    assert isinstance(error.__cause__, EOFError)


def test_idx_plain_file_named_gz(tmp_path: Path) -> None:
    arrays = make_arrays()
    folder = write_idx_dir(tmp_path / "idx", arrays)
    plain = folder / "t10k-images-idx3-ubyte"
    plain.rename(folder / "t10k-images-idx3-ubyte.gz")
    error = expect_data_error(folder, r"t10k-images-idx3-ubyte\.gz \(BadGzipFile")
    assert isinstance(error.__cause__, OSError)


# --- where the data comes from ---


def test_mnist_path_env_is_used_without_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from_env.npz"
    arrays = write_npz(path, **make_arrays(seed=2))
    monkeypatch.setenv("MNIST_PATH", str(path))

    loaded = load_mnist()

    assert_arrays_equal(loaded, arrays)
    assert loaded.source == str(path.resolve())


def test_missing_mnist_path_env_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNIST_PATH", str(tmp_path / "gone.npz"))
    with pytest.raises(DataError, match=r"gone\.npz \(from MNIST_PATH\) does not exist"):
        load_mnist()


def test_explicit_path_wins_over_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_path = tmp_path / "env.npz"
    write_npz(env_path, **make_arrays(seed=3))
    monkeypatch.setenv("MNIST_PATH", str(env_path))
    explicit = tmp_path / "explicit.npz"
    arrays = write_npz(explicit, **make_arrays(seed=4))

    loaded = load_mnist(explicit)

    assert_arrays_equal(loaded, arrays)
    assert loaded.source == str(explicit.resolve())


def test_keras_cache_is_read_without_network(offline: Path) -> None:
    cache_file = offline / "datasets" / "mnist.npz"
    cache_file.parent.mkdir()
    arrays = write_npz(cache_file, **make_arrays(seed=5))

    loaded = load_mnist()

    assert_arrays_equal(loaded, arrays)
    assert loaded.source == f"Keras download cache ({cache_file.resolve()})"


def test_offline_without_cache_fails_fast(
    no_local_mnist: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host that refuses the connection, as an offline machine's network does: the probe
    really connects (nothing is mocked), to a loopback port where nobody listens."""
    with socket.socket() as closed:  # bound, never listening: connecting is refused at once
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setattr(data, "_DOWNLOAD_HOST", "127.0.0.1")
        monkeypatch.setattr(data, "_DOWNLOAD_PORT", closed.getsockname()[1])
        start = time.perf_counter()
        with pytest.raises(DataError, match=r"127\.0\.0\.1 cannot be reached") as caught:
            load_mnist()
        elapsed = time.perf_counter() - start

    assert elapsed < 1.0  # refused, not timed out: the probe waits up to _PROBE_TIMEOUT_S (5 s)
    assert str(no_local_mnist / "datasets" / "mnist.npz") in str(caught.value)
    assert HOW_TO_FIX in str(caught.value)


def test_hanging_dns_is_cut_off(no_local_mnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hanging_lookup(*args: object, **kwargs: object) -> list:
        release.wait(60)
        raise socket.gaierror("Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    start = time.perf_counter()
    try:
        with pytest.raises(DataError, match=r"cannot be reached to download it"):
            load_mnist()
    finally:
        release.set()
    elapsed = time.perf_counter() - start

    assert data._PROBE_TIMEOUT_S - 0.5 < elapsed < data._PROBE_TIMEOUT_S + 3


def fake_keras(get_file) -> types.ModuleType:
    module = types.ModuleType("keras")
    module.utils = types.SimpleNamespace(get_file=get_file)
    return module


def test_download_goes_to_the_keras_cache(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: contextlib.nullcontext())
    calls = []

    def get_file(fname: str, origin: str, file_hash: str, cache_dir: str) -> str:
        calls.append((fname, origin, cache_dir))
        target = Path(cache_dir) / "datasets" / fname
        target.parent.mkdir(exist_ok=True)
        write_npz(target, **make_arrays(seed=6))
        return str(target)

    monkeypatch.setitem(sys.modules, "keras", fake_keras(get_file))

    loaded = load_mnist()

    assert calls == [("mnist.npz", data._DOWNLOAD_URL, str(offline))]
    assert_arrays_equal(loaded, make_arrays(seed=6))
    assert loaded.source.startswith("Keras download cache (")


def test_failed_download_is_a_data_error(offline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: contextlib.nullcontext())

    def get_file(*args: object, **kwargs: object) -> str:
        raise Exception("URL fetch failure on https://...: 403 -- Forbidden")

    monkeypatch.setitem(sys.modules, "keras", fake_keras(get_file))

    with pytest.raises(
        DataError, match=r"Downloading MNIST from https://.* failed: .*403"
    ) as caught:
        load_mnist()
    assert caught.value.__cause__ is not None


# --- normalisation ---


def test_to_float_scales_to_unit_interval() -> None:
    images = np.array([[[0, 51, 255]]], dtype=np.uint8)

    scaled = to_float(images)

    assert scaled.dtype == np.float32
    assert scaled.shape == (1, 1, 3)
    np.testing.assert_allclose(scaled, [[[0.0, 0.2, 1.0]]], rtol=1e-6)
    assert scaled[0, 0, 2] == 1.0


def test_to_float_refuses_already_scaled_input() -> None:
    with pytest.raises(ValueError, match="expects uint8 pixels 0-255, got dtype float32"):
        to_float(np.zeros((2, 28, 28), np.float32))


# --- real MNIST ---


def test_real_mnist(mnist_path: Path) -> None:
    mnist = load_mnist(mnist_path)

    assert mnist.x_train.shape == (60000, 28, 28)
    assert mnist.y_train.shape == (60000,)
    assert mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_test.shape == (10000,)
    assert {mnist.x_train.dtype, mnist.y_train.dtype, mnist.x_test.dtype} == {np.dtype(np.uint8)}
    assert mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.x_train.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert load_mnist(mnist_path) is mnist


def test_test_digits_alone_are_the_test_split_and_the_training_set_is_not_kept(
    tmp_path: Path,
) -> None:
    from mnist_core import data

    expected = write_npz(tmp_path / "mnist.npz")
    source = data.load_mnist(tmp_path / "mnist.npz").source

    test = data.load_test_digits(tmp_path / "mnist.npz")

    np.testing.assert_array_equal(test.x_test, expected["x_test"])
    np.testing.assert_array_equal(test.y_test, expected["y_test"])
    assert test.source == source
    assert data._load_cached.cache_info().currsize == 0  # nothing holds the training digits
