"""Tests for mnist_core.bundles: a run exported as one .zip and imported elsewhere gives the same
run, and every kind of damaged or hostile bundle is refused with a message, leaving nothing."""

from __future__ import annotations

import io
import json
import re
import stat
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import keras
import numpy as np
import pytest

from mnist_core.bundles import (
    MANIFEST,
    MAX_BUNDLE_BYTES,
    export_bundle,
    import_bundle,
    read_bundle_file,
)
from mnist_core.errors import ModelError
from mnist_core.ml.predict import predict_proba
from mnist_core.runs import PRETRAINED_DIR, PROBABILITIES_FILE, REPLAY_FILE, RUN_FILES, RunStore
from mnist_core.serving import ONNX_FILE
from tests.unit.test_runs import model_with_lambda

ROOT = Path(__file__).resolve().parents[2]

REFUSED = "cannot import this run bundle: "


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, trained, digits) -> tuple[RunStore, str]:
    """A store with one saved run, and that run's id: where bundles come from."""
    store = RunStore(tmp_path_factory.mktemp("source"))
    run_id = store.save(
        trained, data_source="synthetic digits", data_fingerprint=digits.fingerprint
    )
    return store, run_id


@pytest.fixture(scope="module")
def bundle(source: tuple[RunStore, str]) -> bytes:
    return export_bundle(*source)


@pytest.fixture
def store(runs_dir: Path) -> RunStore:
    """An empty store that bundles are imported into."""
    return RunStore(runs_dir)


def members_of(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zipped(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.filterwarnings("ignore", "Duplicate name")  # one hostile case wants them
        for name, content in members:
            archive.writestr(name, content)
    return buffer.getvalue()


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def changed(data: bytes, name: str, content: bytes | None) -> bytes:
    """The bundle `data` with the member `name` replaced, added, or removed (None)."""
    members = members_of(data)
    members.pop(name, None)
    if content is not None:
        members[name] = content
    return zipped(list(members.items()))


def with_json(data: bytes, name: str, edit: Callable[[dict], object]) -> bytes:
    """The bundle with the JSON member `name` replaced by what `edit` returns for it."""
    return changed(data, name, json.dumps(edit(json.loads(members_of(data)[name]))).encode())


def with_array(data: bytes, array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return changed(data, PROBABILITIES_FILE, buffer.getvalue())


def with_model(data: bytes, model: keras.Model, folder: Path) -> bytes:
    path = folder / "model.keras"
    model.save(path)
    return changed(data, "model.keras", path.read_bytes())


def with_lying_size(data: bytes, name: str, content: bytes, declared: int) -> bytes:
    """The bundle with member `name` holding `content`, but its headers declaring `declared`
    unpacked bytes: zipfile trusts the headers, so they must not be what limits memory."""
    patched = bytearray(changed(data, name, content))
    with zipfile.ZipFile(io.BytesIO(bytes(patched))) as archive:
        local, directory = archive.getinfo(name).header_offset, archive.start_dir
    size = declared.to_bytes(4, "little")
    patched[local + 22 : local + 26] = size
    while patched[directory : directory + 4] == b"PK\x01\x02":
        lengths = [
            int.from_bytes(patched[directory + k : directory + k + 2], "little")
            for k in (28, 30, 32)
        ]
        if patched[directory + 46 : directory + 46 + lengths[0]] == name.encode():
            patched[directory + 24 : directory + 28] = size
        directory += 46 + sum(lengths)
    return bytes(patched)


def bomb(name: str, megabytes: int) -> tuple[zipfile.ZipInfo, Callable[[zipfile.ZipFile], None]]:
    """A writer of member `name` that inflates to `megabytes` MB of zeros."""
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED

    def write(archive: zipfile.ZipFile) -> None:
        with archive.open(info, "w") as member:
            for _ in range(megabytes):
                member.write(bytes(1_000_000))

    return info, write


def with_bomb(data: bytes, name: str, megabytes: int) -> bytes:
    members = members_of(data)
    members.pop(name)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)
        bomb(name, megabytes)[1](archive)
    return buffer.getvalue()


def model_archive_with(data: bytes, name: str, content: bytes) -> bytes:
    """The bundle with the member `name` inside its model.keras (a zip archive) replaced or
    added."""
    return changed(data, "model.keras", changed(members_of(data)["model.keras"], name, content))


def npy_header_only(shape: tuple[int, ...]) -> bytes:
    """An .npy file of float32 whose header announces `shape`, followed by a few bytes."""
    buffer = io.BytesIO()
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + bytes(4_000)


def leftovers(store: RunStore) -> list[str]:
    return sorted(path.name for path in store.root.iterdir()) if store.root.exists() else []


# --- the round trip ---


def test_the_bundle_holds_the_runs_files_and_a_manifest(
    source: tuple[RunStore, str], bundle: bytes
) -> None:
    source_store, run_id = source
    members = members_of(bundle)

    assert sorted(members) == sorted([MANIFEST, *RUN_FILES, PROBABILITIES_FILE, REPLAY_FILE])
    for name in [*RUN_FILES, PROBABILITIES_FILE, REPLAY_FILE]:
        assert members[name] == (source_store.root / run_id / name).read_bytes(), name
    manifest = json.loads(members[MANIFEST])
    assert {key: manifest[key] for key in ("format", "version", "run_id")} == {
        "format": "mnist-run-bundle",
        "version": 1,
        "run_id": run_id,
    }
    assert timedelta(0) <= datetime.now(UTC) - datetime.fromisoformat(manifest["created"])
    assert datetime.now(UTC) - datetime.fromisoformat(manifest["created"]) < timedelta(hours=1)


def test_round_trip_gives_the_same_run_under_a_new_id(
    source: tuple[RunStore, str], bundle: bytes, store: RunStore, digits
) -> None:
    source_store, run_id = source
    original = source_store.get(run_id)

    new_id = import_bundle(store, bundle)

    assert re.fullmatch(r"[0-9]{8}-[0-9]{6}-mlp-[0-9a-f]{6}", new_id) and new_id != run_id
    assert [run.run_id for run in store.list()] == [new_id]
    run = store.get(new_id)
    assert run.config == original.config
    assert run.history == original.history
    assert run.metrics == original.metrics.replace(imported_from=run_id)
    assert run.metrics.seed == original.config.seed == 7
    assert run.metrics.data_fingerprint == digits.fingerprint
    assert run.metrics.versions["keras"] == keras.__version__
    np.testing.assert_array_equal(run.test_probabilities(), original.test_probabilities())
    for imported, exported in zip(run.replay(), original.replay(), strict=True):
        np.testing.assert_array_equal(imported, exported)
    np.testing.assert_array_equal(
        predict_proba(store.load_model(new_id), digits.x_test),
        predict_proba(source_store.load_model(run_id), digits.x_test),
    )
    assert leftovers(store) == [new_id]


def test_import_into_the_same_store_never_overwrites(
    store: RunStore, trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = store.save(trained)
    before = {p.name: p.read_bytes() for p in (store.root / run_id).iterdir()}
    free = "20200101-000000-mlp-bbbbbb"
    ids = iter([run_id, free])  # the import first draws the id of the run it came from
    monkeypatch.setattr("mnist_core.runs._new_run_id", lambda architecture: next(ids))

    new_id = import_bundle(store, export_bundle(store, run_id))

    assert new_id == free
    assert {p.name: p.read_bytes() for p in (store.root / run_id).iterdir()} == before
    assert store.get(new_id).metrics.imported_from == run_id
    assert leftovers(store) == sorted([run_id, free])


def test_the_pretrained_run_exports_and_imports(store: RunStore) -> None:
    with_pretrained = RunStore(store.root, pretrained=PRETRAINED_DIR)
    (pretrained,) = [run for run in with_pretrained.list() if run.pretrained]

    new_id = import_bundle(store, export_bundle(with_pretrained, pretrained.run_id))

    run = store.get(new_id)
    assert run.config == pretrained.config and run.config.architecture == "strided"
    assert run.history == pretrained.history
    assert run.test_accuracy == pretrained.test_accuracy == 0.9955
    assert run.metrics.imported_from == pretrained.run_id
    np.testing.assert_array_equal(run.test_probabilities(), pretrained.test_probabilities())
    assert not run.pretrained and run.path.parent == store.root


def test_a_bundle_without_probabilities_or_replay_imports(bundle: bytes, store: RunStore) -> None:
    without = changed(changed(bundle, PROBABILITIES_FILE, None), REPLAY_FILE, None)
    new_id = import_bundle(store, without)

    assert store.get(new_id).test_probabilities() is None
    assert store.get(new_id).replay() is None
    assert sorted(p.name for p in (store.root / new_id).iterdir()) == sorted(
        [*RUN_FILES, ONNX_FILE]  # written on import, by the subprocess that checks the model
    )


def test_importing_leaves_tensorflow_out_of_the_importing_process(
    bundle: bytes, tmp_path: Path
) -> None:
    """The web process imports bundles: the model is checked and converted in a subprocess."""
    (tmp_path / "in.zip").write_bytes(bundle)
    code = (
        "import sys; from pathlib import Path; "
        "from mnist_core.bundles import import_bundle; from mnist_core.runs import RunStore; "
        f"store = RunStore({str(tmp_path / 'runs')!r}); "
        f"run = store.get(import_bundle(store, Path({str(tmp_path / 'in.zip')!r}).read_bytes())); "
        "from mnist_core.serving import OnnxModel; OnnxModel(run.onnx_path); "
        "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_writer_pid_of_a_checkpoint_is_dropped(bundle: bytes, store: RunStore) -> None:
    def as_checkpoint(metrics: dict) -> dict:
        return {**metrics, "status": "interrupted", "writer_pid": 1}  # pid 1 always lives

    new_id = import_bundle(store, with_json(bundle, "metrics.json", as_checkpoint))

    run = store.get(new_id)
    assert run.metrics.writer_pid is None and run.status == "interrupted"
    assert "writer_pid" not in json.loads((run.path / "metrics.json").read_text())
    assert [listed.run_id for listed in store.list()] == [new_id]  # not hidden as "training"


def test_export_errors(source: tuple[RunStore, str], monkeypatch: pytest.MonkeyPatch) -> None:
    source_store, run_id = source
    with pytest.raises(ModelError, match="run '20200101-000000-mlp-abcdef' does not exist"):
        export_bundle(source_store, "20200101-000000-mlp-abcdef")

    monkeypatch.setattr("mnist_core.bundles.MAX_BUNDLE_BYTES", 100_000)
    with pytest.raises(ModelError) as info:
        export_bundle(source_store, run_id)
    assert str(info.value).startswith(f"run {run_id!r} is too large to share as a bundle (")
    assert str(info.value).endswith(" MB; a bundle may have 0.1 MB). Share its model file instead")


def test_read_bundle_file_refuses_missing_and_huge_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        read_bundle_file(tmp_path / "missing.zip")
    assert str(info.value) == (
        f"cannot read {str(tmp_path / 'missing.zip')!r}: No such file or directory"
    )

    huge = tmp_path / "huge.zip"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_BUNDLE_BYTES + 1)  # sparse: refused by its size, never read
    with pytest.raises(ModelError) as info:
        read_bundle_file(huge)
    assert str(info.value).startswith(f"{REFUSED}it is 50.0 MB; a bundle may have at most 50.0 MB")


# --- hostile and damaged bundles ---


HOSTILE: dict[str, tuple[Callable[[bytes, Path], bytes], str]] = {
    "not-a-zip": (lambda b, t: b"just some text", "the file is not a .zip archive"),
    "empty": (lambda b, t: b"", "the file is not a .zip archive"),
    "too-large": (
        lambda b, t: b + bytes(MAX_BUNDLE_BYTES - len(b) + 1),
        "it is 50.0 MB; a bundle may have at most 50.0 MB",
    ),
    "truncated": (lambda b, t: b[: len(b) // 2], "it is a truncated or damaged zip archive"),
    "damaged": (
        lambda b, t: b[:1000] + bytes(50_000) + b[51_000:],
        "it is damaged (",
    ),
    "missing-member": (
        lambda b, t: changed(b, "history.json", None),
        "it lacks history.json. Export the run again",
    ),
    "unexpected-member": (
        lambda b, t: changed(b, "notes.txt", b"hello"),
        "it holds the unexpected file 'notes.txt' (allowed: bundle.json, config.json, ",
    ),
    "parent-path": (
        lambda b, t: changed(b, "../config.json", b"{}"),
        "it holds a file with a path, '../config.json'; refused",
    ),
    "deep-parent-path": (
        lambda b, t: changed(b, "runs/../../../etc/cron.d/x", b"{}"),
        "it holds a file with a path, 'runs/../../../etc/cron.d/x'; refused",
    ),
    "absolute-path": (
        lambda b, t: changed(b, "/etc/passwd", b"root"),
        "it holds a file with a path, '/etc/passwd'; refused",
    ),
    "windows-path": (
        lambda b, t: changed(b, "..\\model.keras", b""),
        "it holds a file with a path, '..\\\\model.keras'; refused",
    ),
    "symlink": (
        lambda b, t: zipped(
            [
                *[(n, c) for n, c in members_of(b).items() if n != "config.json"],
                (symlink_info("config.json"), b"/etc/passwd"),
            ]
        ),
        "it holds 'config.json' as a link or special file",
    ),
    "duplicate-member": (
        lambda b, t: zipped([*members_of(b).items(), ("config.json", b"{}")]),
        "it holds 'config.json' twice",
    ),
    "too-many-members": (
        lambda b, t: zipped([(f"f{index}", b"") for index in range(1000)]),
        "it holds 1000 files; refused (at most 7 belong in it)",
    ),
    "zip-bomb": (
        lambda b, t: with_bomb(b, "history.json", 300),
        "it holds 'history.json', which unpacks to 300.0 MB; at most 1.0 MB is allowed "
        "(a zip bomb?)",
    ),
    "compression-ratio": (
        lambda b, t: with_bomb(b, PROBABILITIES_FILE, 9),
        "it holds 'test_probabilities.npy', compressed ",
    ),
    "lying-sizes": (
        lambda b, t: with_lying_size(b, "history.json", bytes(50_000_000), 100),
        "it is damaged (Bad CRC-32 for file 'history.json')",
    ),
    "bad-json": (
        lambda b, t: changed(b, "config.json", b"{not json"),
        "config.json is not valid JSON (Expecting property name enclosed in double quotes",
    ),
    "deeply-nested-json": (
        lambda b, t: changed(b, "history.json", b"[" * 100_000 + b"]" * 100_000),
        "history.json is not valid JSON (",
    ),
    "config-unknown-field": (
        lambda b, t: with_json(b, "config.json", lambda c: {**c, "colour": "red"}),
        "config.json holds an invalid setting (colour: unknown setting; known settings: [",
    ),
    "config-invalid-value": (
        lambda b, t: with_json(b, "config.json", lambda c: {**c, "epochs": 0}),
        "config.json holds an invalid setting (epochs: must be from 1 to 200, got 0)",
    ),
    "history-unequal-lengths": (
        lambda b, t: with_json(b, "history.json", lambda h: {**h, "loss": h["loss"][:1]}),
        "history.json: the curves have different lengths ([1, 3])",
    ),
    "history-not-numbers": (
        lambda b, t: with_json(b, "history.json", lambda h: {**h, "loss": ["low", 0.1, 0.2]}),
        "history.json: loss must be a list of numbers",
    ),
    "history-not-an-object": (
        lambda b, t: with_json(b, "history.json", lambda h: list(h.values())),
        "history.json must be an object mapping loss, accuracy, val_loss, val_accuracy to ",
    ),
    "history-unknown-curve": (
        lambda b, t: with_json(b, "history.json", lambda h: {**h, "<script>": [1, 2, 3]}),
        "history.json holds the unknown curve '<script>'",
    ),
    "metrics-missing-key": (
        lambda b, t: with_json(
            b, "metrics.json", lambda m: {k: v for k, v in m.items() if k != "test_accuracy"}
        ),
        "metrics.json lacks test_accuracy",
    ),
    "metrics-wrong-type": (
        lambda b, t: with_json(b, "metrics.json", lambda m: {**m, "test_accuracy": "99 %"}),
        "metrics.json: test_accuracy must be from 0 to 1, got '99 %'",
    ),
    "metrics-other-seed": (
        lambda b, t: with_json(b, "metrics.json", lambda m: {**m, "seed": 8}),
        "metrics.json says seed 8, but config.json says 7",
    ),
    "replay-wrong-shape": (
        lambda b, t: changed(b, REPLAY_FILE, npz(indices=np.arange(3), probabilities=np.ones(5))),
        "replay.npz must hold the replay panel's indices and answers; it holds arrays of shapes",
    ),
    "replay-other-member": (
        lambda b, t: changed(b, REPLAY_FILE, npz(indices=np.arange(3), extra=np.ones(5))),
        "its replay.npz holds the unexpected file 'extra.npy'",
    ),
    "probabilities-wrong-shape": (
        lambda b, t: with_array(b, np.full((100, 9), 0.1, dtype=np.float32)),
        "test_probabilities.npy must be an (N, 10) array of probabilities; it holds float32 "
        "of shape (100, 9)",
    ),
    "probabilities-not-floats": (
        lambda b, t: with_array(b, np.zeros((100, 10), dtype=np.int64)),
        "it holds int64 of shape (100, 10)",
    ),
    "probabilities-pickled-objects": (
        lambda b, t: with_array(b, np.array([[object()] * 10] * 2)),
        "it holds object of shape (2, 10)",
    ),
    "probabilities-header-lies": (
        lambda b, t: changed(b, PROBABILITIES_FILE, npy_header_only((10**10, 10))),
        "(the file is too short for shape (10000000000, 10))",
    ),
    "probabilities-out-of-range": (
        lambda b, t: with_array(b, np.full((100, 10), 2.0, dtype=np.float32)),
        "it holds values outside 0 to 1",
    ),
    "manifest-other-format": (
        lambda b, t: with_json(b, MANIFEST, lambda m: {**m, "format": "something-else"}),
        "bundle.json does not describe a run bundle",
    ),
    "manifest-newer-version": (
        lambda b, t: with_json(b, MANIFEST, lambda m: {**m, "version": 2}),
        "it was made by a newer version of this tool (bundle format 2; this one reads 1). "
        "Update this tool",
    ),
    "manifest-bad-run-id": (
        lambda b, t: with_json(b, MANIFEST, lambda m: {**m, "run_id": "../../etc"}),
        "bundle.json names no valid run id (got '../../etc')",
    ),
    "model-with-lambda": (
        lambda b, t: with_model(b, model_with_lambda(t / "code-ran"), t),
        "model 'model.keras' contains a Lambda layer (Python code); it was not loaded, because "
        "loading it could run code from the file. Use a model saved by this tool",
    ),
    "model-wrong-input-shape": (
        lambda b, t: with_model(b, flat_input_model(), t),
        "model 'model.keras' maps (None, 784) to (None, 10); expected (None, 28, 28) images",
    ),
    "model-not-a-zip": (
        lambda b, t: changed(b, "model.keras", b"not a model"),
        "its model.keras is not a Keras model file",
    ),
    "model-with-a-path-inside": (
        lambda b, t: model_archive_with(b, "../../evil.py", b"import os"),
        "its model.keras holds a file with a path, '../../evil.py'; refused",
    ),
    "model-compression-ratio-inside": (
        lambda b, t: model_archive_with(b, "model.weights.h5", bytes(50_000_000)),
        "its model.keras holds 'model.weights.h5', compressed ",
    ),
}


def symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def flat_input_model() -> keras.Model:
    inputs = keras.Input(shape=(784,))
    return keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(inputs))


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bundles_are_refused_and_leave_nothing(
    case: str, bundle: bytes, store: RunStore, tmp_path: Path
) -> None:
    make, expected = HOSTILE[case]
    data = make(bundle, tmp_path)

    with pytest.raises(ModelError) as info:
        import_bundle(store, data)

    message = str(info.value)
    assert message.startswith(REFUSED)
    assert expected in message
    assert "\n" not in message and len(message) < 600
    assert leftovers(store) == []
    assert not (tmp_path / "code-ran").exists()


def test_a_zip_bomb_inside_the_model_file_is_refused(bundle: bytes, store: RunStore) -> None:
    model = members_of(members_of(bundle)["model.keras"])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in model.items():
            if name != "model.weights.h5":
                archive.writestr(name, content)
        bomb("model.weights.h5", 300)[1](archive)
    assert len(buffer.getvalue()) < 1_000_000  # 300 MB of weights packed in under 1 MB

    with pytest.raises(ModelError) as info:
        import_bundle(store, changed(bundle, "model.keras", buffer.getvalue()))

    assert str(info.value).startswith(
        f"{REFUSED}its model.keras holds 'model.weights.h5', which unpacks to 300.0 MB; at most "
        "100.0 MB is allowed (a zip bomb?)"
    )
    assert leftovers(store) == []


def test_a_full_disk_while_writing_leaves_nothing(
    bundle: bytes, store: RunStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mnist_core.bundles.np.save", full_disk)

    with pytest.raises(ModelError) as info:
        import_bundle(store, bundle)

    assert str(info.value) == (
        f"cannot save the imported run in {str(store.root)!r}: No space left on device; "
        "free some space or choose another runs folder"
    )
    assert leftovers(store) == []
