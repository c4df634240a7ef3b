"""The model folder: everything serving needs, in files a user can read without this library or pickle.

    model/
      metadata.json     format version, model kind, hyperparameters, calibration, metrics, data statistics,
                        versions
      vocabulary.npz    users, items: sorted raw ids (int64 or unicode); an id's index is its position
      weights.npz       named float32 arrays (`gmf/user`, `mlp/dense_0/kernel`, ...) for `inference.py`
      seen.npz          indptr, indices: every user's interactions, excluded from recommendations
      popularity.npy    interactions per item, for cold-start users
      optimizer.npz     Adam's moments of every weight (`m/gmf/user`, `v/gmf/user`, ...) and its step count
                        (`iterations`), for a warm start to continue from; serving never reads it
      items.npz         item metadata aligned with the item vocabulary (`ncf.metadata`; optional: a model
                        trained without an items table has none)
      retrieval.npz     index: the first stage of two-stage top-k for a large catalogue, a faiss IVF index as
                        bytes in faiss' own format (`ncf.retrieval`; optional, with metadata.json's "retrieval")
      saved_model/      TensorFlow SavedModel taking raw ids as strings (optional; TF Serving can host it)

Arrays are read with `allow_pickle=False`, so a hostile folder cannot run code. `load` refuses a folder
whose format version it does not know, naming both versions. `save` over an existing model swaps the whole
folder's contents: what loads is the complete old model, the complete new one, or nothing (see `save`).

>>> save("model", artifact)              # doctest: +SKIP
>>> load("model").metadata["kind"]       # doctest: +SKIP
'neumf'
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifact_checks import check
from .calibration import Calibration
from .errors import ArtifactError
from .metadata import ItemMetadata
from .seen import SeenItems
from .vocab import Vocabulary

#: Version 2 added `calibration` to metadata.json. A library of version 1 would load such a folder and serve
#: the plain sigmoid, silently; it refuses version 2 instead. Version 1 folders still load here (their
#: probability is the plain sigmoid, as they were served).
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
METADATA = "metadata.json"
SAVED_MODEL = "saved_model"
OPTIMIZER = "optimizer.npz"
ITEMS = "items.npz"
RETRIEVAL = "retrieval.npz"
#: Every entry `save` writes, metadata.json last. A save removes all of them before its own land, so no file
#: of another model (its optimizer.npz, its saved_model/) stays beside the new one's.
ENTRIES = ("vocabulary.npz", "weights.npz", "seen.npz", "popularity.npy", OPTIMIZER, ITEMS, RETRIEVAL, SAVED_MODEL,
           METADATA)
#: The folder inside the model folder that a save writes into before swapping the files in: inside, because
#: the model folder itself may be a mount point (SageMaker's /opt/ml/model) that cannot be renamed, and only a
#: move within one file system is a rename.
STAGING = ".ncf-save-"


@dataclass(frozen=True)
class ModelArtifact:
    kind: str
    weights: dict[str, np.ndarray]
    users: Vocabulary
    items: Vocabulary
    seen: SeenItems
    popularity: np.ndarray
    metadata: dict = field(default_factory=dict)
    #: `training.optimizer_state`, or None (not exported, or not asked for by `load`).
    optimizer: dict[str, np.ndarray] | None = None
    #: Rows aligned with `items` (`ncf.metadata`), or None: the model was trained without an items table.
    item_metadata: ItemMetadata | None = None
    #: `[bytes]` uint8: the retrieval index in faiss' format (`ncf.retrieval.index_bytes`), or None.
    retrieval_index: np.ndarray | None = None


def save(path: str | Path, artifact: ModelArtifact, keras_model=None, *, keep: tuple[str, ...] = ()) -> Path:
    """Write the folder (created if missing); with `keras_model`, also the raw-id SavedModel. `keep` names old
    entries that stay as they are (`SAVED_MODEL` when retrieval is added to a model, whose weights are the same).

    Invariant: whatever happens during a save over an existing model (an error, a full disk, a SIGKILL at any
    point), `load` of the folder afterwards gives the complete old model, the complete new one, or an
    `ArtifactError` ("holds no metadata.json"); never files of one beside the metadata (kind, calibration,
    threshold) of the other. How: every file is written into a staging folder inside `path` first; only then
    does the old metadata.json leave, the old entries follow, the new entries move in, and the new
    metadata.json moves in last, each move a rename. So metadata.json present means every entry beside it came
    from the save that wrote it. The folder itself is never renamed, as it may be a mount point.

    A failure before the swap (disk full, read-only folder, a SavedModel that cannot be exported) leaves the
    old model as it was; one during the swap leaves no model file at all. Either way the staging folder is
    removed and the error raised is an `ArtifactError` naming the file. A kill leaves its staging folder,
    which the next save into `path` removes. `load` checks that metadata.json is the same file after reading
    the arrays, so a load that overlaps a save is refused too rather than mixing two models.
    """
    path = Path(path)
    try:
        return _save(path, artifact, keras_model, keep)
    except OSError as e:
        raise ArtifactError(f"cannot write to {_unstaged(e.filename or path)}: {e.strerror or e}") from e
    except ArtifactError as e:  # the SavedModel's, naming its staging folder
        raise ArtifactError(_unstaged(str(e))) from e


def _unstaged(name) -> str:
    """A path inside a staging folder as the file it becomes (`m/.ncf-save-x1/new/weights.npz` -> `m/weights.npz`),
    the staging folder itself as the model folder."""
    return re.sub(rf"/{re.escape(STAGING)}[^/]*(/new|/old)?(?=/|$)", "", str(name))


def _step(done: str) -> None:
    """Called after each change `save` makes on disk; the tests fail or kill a save here, at every step, and
    check what the folder then loads as."""


def _save(path: Path, artifact: ModelArtifact, keras_model, keep: tuple[str, ...] = ()) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob(f"{STAGING}*"):  # a killed save's
        shutil.rmtree(leftover)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=path))
    new, old = staging / "new", staging / "old"
    emptied = placed = False  # the old metadata.json has left / the new one is in
    try:
        new.mkdir()
        old.mkdir()
        written = _write(new, artifact, keras_model)
        if os.path.lexists(path / METADATA):
            os.replace(path / METADATA, old / METADATA)
        emptied = True
        _sync(path)
        _step(f"removed the old {METADATA}")
        for name in ENTRIES[:-1]:
            if os.path.lexists(path / name) and name not in keep:
                os.replace(path / name, old / name)  # a folder (saved_model/) moves whole, in one rename
                _step(f"removed the old {name}")
        for name in written[:-1]:
            os.replace(new / name, path / name)
            _step(f"moved in {name}")
        _sync(path)  # every entry's move is on disk before the metadata that vouches for them
        os.replace(new / METADATA, path / METADATA)
        placed = True
        _sync(path)
        _step(f"moved in {METADATA}")
    except BaseException:
        if emptied and not placed:  # a half-swapped folder: no model rather than a mix of two
            for name in ENTRIES:
                _remove(path / name)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _write(folder: Path, artifact: ModelArtifact, keras_model) -> list[str]:
    """Every file of the model into `folder`, synced to disk; the names written, metadata.json last."""
    metadata = {**artifact.metadata, "format_version": FORMAT_VERSION, "kind": artifact.kind,
                "users": len(artifact.users), "items": len(artifact.items)}
    arrays = {"vocabulary.npz": lambda f: np.savez(f, users=artifact.users.ids, items=artifact.items.ids),
              "weights.npz": lambda f: np.savez(f, **artifact.weights),
              "seen.npz": lambda f: np.savez(f, indptr=artifact.seen.indptr, indices=artifact.seen.indices),
              "popularity.npy": lambda f: np.save(f, artifact.popularity)}
    if artifact.optimizer is not None:
        arrays[OPTIMIZER] = lambda f: np.savez(f, **artifact.optimizer)
    if artifact.item_metadata is not None:
        if artifact.item_metadata.n_items != len(artifact.items):
            raise ArtifactError(f"item metadata for {artifact.item_metadata.n_items:,} items, the model has "
                                f"{len(artifact.items):,}")
        arrays[ITEMS] = artifact.item_metadata.save
    if artifact.retrieval_index is not None:
        arrays[RETRIEVAL] = lambda f: np.savez(f, index=np.asarray(artifact.retrieval_index, np.uint8))
    for name, write in arrays.items():
        _write_file(folder / name, write)
        _step(f"wrote {name}")
    written = list(arrays)
    if keras_model is not None:
        from .savedmodel import export_saved_model

        export_saved_model(keras_model, artifact.users, artifact.items, folder / SAVED_MODEL,
                           Calibration.from_dict(artifact.metadata.get("calibration")))
        _sync_tree(folder / SAVED_MODEL)
        metadata["saved_model"] = SAVED_MODEL
        written.append(SAVED_MODEL)
        _step(f"wrote {SAVED_MODEL}")
    _write_file(folder / METADATA, lambda f: f.write(json.dumps(metadata, indent=2, sort_keys=True).encode()))
    _step(f"wrote {METADATA}")
    return written + [METADATA]


def _write_file(file: Path, write) -> None:
    with open(file, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def _sync(folder: Path) -> None:
    """A folder's entries (renames, removals) on disk, so a power cut keeps the order the swap made them in."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: a file system that cannot sync a folder (some FUSE mounts)
            raise
    finally:
        os.close(fd)


def _sync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _sync(Path(root))


def _remove(entry: Path) -> None:
    """Best effort, on the way out of a failed save: the error that stopped it is the one to report."""
    try:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif os.path.lexists(entry):
            os.remove(entry)
    except OSError:
        pass


def read_metadata(path: str | Path) -> dict:
    path = Path(path)
    file = path / METADATA
    if not path.is_dir():
        raise ArtifactError(f"model folder {path} does not exist")
    if not os.path.lexists(file):
        interrupted = "; a save into it was interrupted" if any(path.glob(f"{STAGING}*")) else ""
        raise ArtifactError(f"{path} holds no {METADATA}: not a model folder, or an incomplete one{interrupted}")
    _regular_file(file)
    try:
        metadata = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{file} is not valid JSON ({e})") from e
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{file} must hold a JSON object")
    version = metadata.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ArtifactError(f"{path} was written in model format version {version!r}; this library reads versions "
                            f"{', '.join(map(str, READABLE_VERSIONS))}")
    return metadata


def _regular_file(file: Path) -> None:
    """Only regular files are opened: a symbolic link could point anywhere (`/etc/passwd`), and a FIFO or a
    device would block the reader (and the server's start) forever."""
    try:
        mode = os.lstat(file).st_mode
    except FileNotFoundError as e:
        raise ArtifactError(f"model file {file} is missing") from e
    except OSError as e:
        raise ArtifactError(f"model file {file} cannot be read ({e.strerror or e})") from e
    if stat.S_ISLNK(mode):
        raise ArtifactError(f"model file {file} is a symbolic link; model files must be regular files")
    if not stat.S_ISREG(mode):
        raise ArtifactError(f"model file {file} is not a regular file")


def _check_header(file: Path, name: str, stream, stored: int) -> None:
    """Refuse an array whose header claims more data than its `stored` bytes (header included), before
    anything is allocated: a 200-byte member claiming 10^12 floats would otherwise ask numpy for 3.6 TiB."""
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(stream)
    if dtype.hasobject:
        raise ArtifactError(f"model file {file}: array {name!r} holds Python objects")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if claimed > stored:
        raise ArtifactError(f"model file {file}: array {name!r} claims {claimed:,} bytes of data but holds "
                            f"{stored:,}")


def _arrays(file: Path) -> dict[str, np.ndarray]:
    _regular_file(file)
    try:
        arrays = {}
        with zipfile.ZipFile(file) as archive:
            for member in archive.infolist():
                if member.compress_type != zipfile.ZIP_STORED:  # np.savez stores; inflating could be a bomb
                    raise ArtifactError(f"model file {file}: array {member.filename!r} is compressed; model "
                                        "arrays are stored as np.savez writes them")
                name = member.filename.removesuffix(".npy")
                with archive.open(member) as stream:
                    _check_header(file, name, stream, member.file_size)
                with archive.open(member) as stream:  # what np.load does per member, header checked first
                    arrays[name] = np.lib.format.read_array(stream, allow_pickle=False)
        return arrays
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, MemoryError) as e:
        raise ArtifactError(f"model file {file} is corrupt or holds objects ({e})") from e


def load(path: str | Path, *, optimizer: bool = False) -> ModelArtifact:
    """Read a folder written by `save`, checking its version and the consistency of its arrays; with
    `optimizer`, also its optimiser state when the folder has one (a warm start's source)."""
    path = Path(path)
    before = _identity(path / METADATA)
    metadata = read_metadata(path)
    vocab = _arrays(path / "vocabulary.npz")
    seen = _arrays(path / "seen.npz")
    _regular_file(path / "popularity.npy")
    try:
        with open(path / "popularity.npy", "rb") as stream:
            _check_header(path / "popularity.npy", "popularity", stream, os.fstat(stream.fileno()).st_size)
            stream.seek(0)
            popularity = np.load(stream, allow_pickle=False)
    except (ValueError, OSError, EOFError, MemoryError) as e:
        raise ArtifactError(f"model file {path / 'popularity.npy'} is corrupt ({e})") from e
    try:
        users, items = Vocabulary(vocab["users"]), Vocabulary(vocab["items"])
        seen_items = SeenItems(seen["indptr"], seen["indices"], len(items))
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: vocabulary or seen items are malformed ({e})") from e
    artifact = ModelArtifact(
        kind=str(metadata.get("kind")), weights=_arrays(path / "weights.npz"), users=users, items=items,
        seen=seen_items, popularity=popularity, metadata=metadata,
        optimizer=_arrays(path / OPTIMIZER) if optimizer and os.path.lexists(path / OPTIMIZER) else None,
        item_metadata=ItemMetadata.from_arrays(_arrays(path / ITEMS), len(items), str(path / ITEMS))
        if os.path.lexists(path / ITEMS) else None,
        retrieval_index=_arrays(path / RETRIEVAL).get("index") if os.path.lexists(path / RETRIEVAL) else None,
    )
    if before is None or _identity(path / METADATA) != before:  # every save replaces metadata.json first
        raise ArtifactError(f"{path} changed while it was read (a save into it at the same time); load it again")
    check(path, artifact)
    return artifact


def _identity(file: Path) -> tuple | None:
    """Which file `file` is: a save puts a new metadata.json in place (a new inode, a new ctime) after removing
    the old one before anything else, so the same identity before and after reading the arrays means no save
    touched the folder in between."""
    try:
        st = os.lstat(file)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns
