"""Which models a multi-model endpoint holds: a registry on disk that every worker of the server reads.

SageMaker sends a load (`POST /models`) or an unload (`DELETE /models/{name}`) to one worker only, and later
invocations of that model to any. So the worker that loads a model records it here, with the arrays every
worker maps (`shared_arrays`) and what its limits were measured at (`costs.Costs`), and the others build their
own view of it from this record on their first request for it; the one that unloads removes the record, and
the others drop the model when they see `generation` change (every worker checks it at each request, and
every few seconds when idle).

    ROOT/
      generation          one byte appended per load or unload: its size changes with every change
      lock                flock(2)ed around every change, so that a name is loaded once and the memory
                          budget is checked against every model at once
      models/KEY/         one folder per loaded model, KEY a hash of its name: model.json and N.npy
      staging/            where a load writes before its folder is renamed into models/ (the load's commit)
      costs/KEY.json      what a model's requests cost as measured at its first load, kept after an unload: SageMaker
                          unloads the least used models when memory runs short and loads them again later

The registry belongs to one server: the master clears it at start (a restarted container would otherwise
list models that SageMaker never loaded into it), and the workers, which may run as another user than the
master, create it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "model.json"


@dataclass(frozen=True)
class Entry:
    """A loaded model, as its manifest (`model.json`) records it.

    Attributes:
        name: the `model_name` SageMaker loaded it under.
        url: the folder it was loaded from.
        id: this load's own id: a model unloaded and loaded again under the same name is another entry.
        folder: where its arrays are.
        manifest: the whole record (`multimodel` writes it).
    """

    name: str
    url: str
    id: str
    folder: Path
    manifest: dict

    @property
    def footprint(self) -> int:
        """The bytes this model counts against the memory budget."""
        return int(self.manifest["footprintBytes"])


class Exists(Exception):
    """A model of that name is loaded already."""


class Full(Exception):
    """The model does not fit the memory budget beside the models loaded."""

    def __init__(self, needed: int, used: int, budget: int):
        super().__init__(f"needs {needed / 2**20:,.1f} MB; {used / 2**20:,.1f} MB of the {budget / 2**20:,.1f} MB "
                         "budget are held by the models loaded")
        self.needed, self.used, self.budget = needed, used, budget


def key(name: str) -> str:
    """A folder name for any model name (which may hold slashes, dots or any character)."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class ModelStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.models = self.root / "models"
        self._generation = self.root / "generation"

    def clear(self) -> None:
        """Forgets every model (the master, at start)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def _ready(self) -> None:
        for folder in (self.models, self.root / "staging"):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    def generation(self) -> int:
        """A number that changes with every load and unload: what a worker compares to know whether to look."""
        try:
            return os.stat(self._generation).st_size
        except FileNotFoundError:
            return 0

    def get(self, name: str) -> Entry | None:
        return self._read(self.models / key(name))

    def _read(self, folder: Path) -> Entry | None:
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:  # never loaded, or unloaded meanwhile
            return None
        return Entry(manifest["modelName"], manifest["modelUrl"], manifest["id"], folder, manifest)

    def entries(self) -> list[Entry]:
        """Every loaded model, by name."""
        try:
            folders = list(self.models.iterdir())
        except FileNotFoundError:
            return []
        found = [entry for entry in map(self._read, folders) if entry is not None]
        return sorted(found, key=lambda e: e.name)

    def used(self) -> int:
        """The bytes the loaded models count against the budget."""
        return sum(entry.footprint for entry in self.entries())

    def costs(self, key: str) -> dict | None:
        """What `keep_costs` kept under `key`, or None."""
        try:
            return json.loads((self.root / "costs" / f"{key}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def keep_costs(self, key: str, fields: dict) -> None:
        folder = self.root / "costs"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        staged = folder / f".{key}.{uuid.uuid4().hex}"
        staged.write_text(json.dumps(fields), encoding="utf-8")
        os.replace(staged, folder / f"{key}.json")  # whole or not at all, for a worker reading it meanwhile

    def staging(self) -> Path:
        """A new, empty folder for a load to write into."""
        self._ready()
        return Path(tempfile.mkdtemp(dir=self.root / "staging"))

    @contextlib.contextmanager
    def _locked(self):
        self._ready()
        fd = os.open(self.root / "lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _changed(self) -> None:
        with open(self._generation, "ab") as f:
            f.write(b".")

    def register(self, staging: Path, manifest: dict, budget: int) -> Entry:
        """Records the model whose arrays `staging` holds under `manifest["modelName"]`, with a new id.

        Raises `Exists` when that name is loaded, `Full` when its `footprintBytes` with those of the models
        loaded would pass `budget`; `staging` is then left to the caller to remove."""
        name = manifest["modelName"]
        folder = self.models / key(name)
        with self._locked():
            if folder.exists():
                raise Exists(name)
            used = self.used()
            if used + manifest["footprintBytes"] > budget:
                raise Full(manifest["footprintBytes"], used, budget)
            manifest = {**manifest, "id": uuid.uuid4().hex}
            (staging / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
            os.rename(staging, folder)
            self._changed()
        return Entry(name, manifest["modelUrl"], manifest["id"], folder, manifest)

    def remove(self, name: str) -> Entry | None:
        """Unregisters `name` and deletes its files (workers that map them keep them until they drop the
        model); None when it was not loaded."""
        folder = self.models / key(name)
        with self._locked():
            entry = self._read(folder)
            if entry is None:
                return None
            gone = self.root / "staging" / f"unloaded-{uuid.uuid4().hex}"
            os.rename(folder, gone)
            self._changed()
        shutil.rmtree(gone, ignore_errors=True)
        return entry
