"""The model folder: everything serving needs, in files a user can read without this library or pickle.

    model/
      metadata.json     format version, model kind, hyperparameters, metrics, data statistics, versions
      vocabulary.npz    users, items: sorted raw ids (int64 or unicode); an id's index is its position
      weights.npz       named float32 arrays (`gmf/user`, `mlp/dense_0/kernel`, ...) for `inference.py`
      seen.npz          indptr, indices: every user's interactions, excluded from recommendations
      popularity.npy    interactions per item, for cold-start users
      saved_model/      TensorFlow SavedModel taking raw ids as strings (optional; TF Serving can host it)

Arrays are read with `allow_pickle=False`, so a hostile folder cannot run code. `load` refuses a folder
whose format version it does not know, naming both versions.

>>> save("model", artifact)              # doctest: +SKIP
>>> load("model").metadata["kind"]       # doctest: +SKIP
'neumf'
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ArtifactError
from .seen import SeenItems
from .vocab import Vocabulary

FORMAT_VERSION = 1
METADATA = "metadata.json"
SAVED_MODEL = "saved_model"


@dataclass(frozen=True)
class ModelArtifact:
    kind: str
    weights: dict[str, np.ndarray]
    users: Vocabulary
    items: Vocabulary
    seen: SeenItems
    popularity: np.ndarray
    metadata: dict = field(default_factory=dict)


def _atomic(path: Path, write) -> None:
    """Write through a temporary name then rename, so a crash never leaves half a file under the real name."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(path: str | Path, artifact: ModelArtifact, keras_model=None) -> Path:
    """Write the folder (created if missing); with `keras_model`, also the raw-id SavedModel.

    A folder that cannot be written (read-only, disk full) raises `ArtifactError` naming the file."""
    try:
        return _save(Path(path), artifact, keras_model)
    except OSError as e:
        raise ArtifactError(f"cannot write to {e.filename or path}: {e.strerror or e}") from e


def _save(path: Path, artifact: ModelArtifact, keras_model) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    metadata = {**artifact.metadata, "format_version": FORMAT_VERSION, "kind": artifact.kind,
                "users": len(artifact.users), "items": len(artifact.items)}
    _atomic(path / "vocabulary.npz", lambda f: np.savez(f, users=artifact.users.ids, items=artifact.items.ids))
    _atomic(path / "weights.npz", lambda f: np.savez(f, **artifact.weights))
    _atomic(path / "seen.npz", lambda f: np.savez(f, indptr=artifact.seen.indptr, indices=artifact.seen.indices))
    _atomic(path / "popularity.npy", lambda f: np.save(f, artifact.popularity))
    if keras_model is not None:
        from .savedmodel import export_saved_model

        export_saved_model(keras_model, artifact.users, artifact.items, path / SAVED_MODEL)
        metadata["saved_model"] = SAVED_MODEL
    # metadata last: a folder with metadata.json is a complete folder.
    _atomic(path / METADATA, lambda f: f.write(json.dumps(metadata, indent=2, sort_keys=True).encode()))
    return path


def read_metadata(path: str | Path) -> dict:
    path = Path(path)
    file = path / METADATA
    if not path.is_dir():
        raise ArtifactError(f"model folder {path} does not exist")
    if not file.is_file():
        raise ArtifactError(f"{path} holds no {METADATA}: not a model folder, or an incomplete one")
    try:
        metadata = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{file} is not valid JSON ({e})") from e
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{file} must hold a JSON object")
    version = metadata.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path} was written in model format version {version!r}; this library reads version {FORMAT_VERSION}"
        )
    return metadata


def _arrays(file: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(file, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except FileNotFoundError as e:
        raise ArtifactError(f"model file {file} is missing") from e
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise ArtifactError(f"model file {file} is corrupt or holds objects ({e})") from e


def load(path: str | Path) -> ModelArtifact:
    """Read a folder written by `save`, checking its version and the consistency of its arrays."""
    path = Path(path)
    metadata = read_metadata(path)
    vocab = _arrays(path / "vocabulary.npz")
    seen = _arrays(path / "seen.npz")
    try:
        popularity = np.load(path / "popularity.npy", allow_pickle=False)
    except FileNotFoundError as e:
        raise ArtifactError(f"model file {path / 'popularity.npy'} is missing") from e
    except (ValueError, OSError, EOFError) as e:
        raise ArtifactError(f"model file {path / 'popularity.npy'} is corrupt ({e})") from e
    try:
        users, items = Vocabulary(vocab["users"]), Vocabulary(vocab["items"])
        seen_items = SeenItems(seen["indptr"], seen["indices"], len(items))
    except (KeyError, TypeError) as e:
        raise ArtifactError(f"{path}: vocabulary or seen items are malformed ({e})") from e
    artifact = ModelArtifact(
        kind=str(metadata.get("kind")), weights=_arrays(path / "weights.npz"), users=users, items=items,
        seen=seen_items, popularity=popularity, metadata=metadata,
    )
    _check_consistent(path, artifact)
    return artifact


def _check_consistent(path: Path, a: ModelArtifact) -> None:
    problems = []
    if len(a.seen.indptr) != len(a.users) + 1:
        problems.append(f"seen items cover {len(a.seen.indptr) - 1} users, vocabulary has {len(a.users)}")
    if a.popularity.shape != (len(a.items),):
        problems.append(f"popularity has shape {a.popularity.shape}, vocabulary has {len(a.items)} items")
    for name, array in a.weights.items():
        rows = {"/user": len(a.users), "/item": len(a.items)}
        for suffix, expected in rows.items():
            if name.endswith(suffix) and array.shape[0] != expected:
                problems.append(f"weights {name} have {array.shape[0]} rows, vocabulary has {expected}")
    if problems:
        raise ArtifactError(f"{path} is inconsistent: " + "; ".join(problems))
