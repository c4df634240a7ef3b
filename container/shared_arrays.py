"""A loaded model's arrays as files that every worker maps: one copy in memory, whatever the worker count.

A single-model server loads its model in the master before the workers fork, so they share its pages. A
multi-model endpoint loads models while it runs, one load request reaching one worker, and every worker then
builds its own `Recommender`: each would hold a private copy of the weights and of what the scorer derives
from them (item vectors for similar items, the MLP's first layer per item and its transpose), which on a
default NeuMF of ml-latest-small's size is more than half of what it holds. Instead, the worker that loads a model
writes every large array of the built `Recommender` once to `.npy` files (`save`), and every worker, itself
included, swaps its own arrays for read-only memory maps of those files (`attach`): the kernel's page cache
holds one copy that all of them share, and a worker that drops the model unmaps it.

Arrays are found by walking the object graph of the model (objects of `ncf` and `container`, their dicts,
lists and tuples) and named by their path (`.scorer.item_hidden`, `.artifact.weights['gmf/item']`), so this
needs no knowledge of what `Recommender` computes: the same code builds the same graph in every worker, and a
path found in one is found in another. An array reached by several paths (the scorer's item embedding is the
artifact's) is written once and swapped at every path. Only arrays of at least `MIN_BYTES` are shared: a map
costs a page at least and a kernel mapping each.

The maps are read-only, so a library change that wrote into a model's array while serving would fail loudly
(numpy's "assignment destination is read-only", a 500 in the tests of every request kind) rather than
corrupt what other workers serve.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Arrays smaller than this stay private to each worker: a map costs a kernel mapping and up to a 4 KiB page more.
MIN_BYTES = 16 * 1024
#: Objects of these packages are walked into; anything else (Flask, locks, numpy's own objects) is a leaf.
PACKAGES = ("ncf", "container")


def _walked(value) -> bool:
    module = type(value).__module__ or ""
    return module.split(".")[0] in PACKAGES and hasattr(value, "__dict__")


def _visit(value, path: str, seen: set[int], found: list[tuple[str, np.ndarray]]) -> None:
    if isinstance(value, np.ndarray):
        found.append((path, value))
        return
    if id(value) in seen:  # an object reached twice (the fold-in's scorer is the recommender's) is walked once
        return
    if isinstance(value, dict):
        seen.add(id(value))
        for key, child in value.items():
            _visit(child, f"{path}[{key!r}]", seen, found)
    elif type(value) in (list, tuple):
        seen.add(id(value))
        for n, child in enumerate(value):
            _visit(child, f"{path}[{n}]", seen, found)
    elif _walked(value):
        seen.add(id(value))
        for name, child in vars(value).items():
            _visit(child, f"{path}.{name}", seen, found)


def arrays(model) -> list[tuple[str, np.ndarray]]:
    """Every numpy array reachable from `model`, with its path, in a fixed order (an array may appear at
    several paths)."""
    found: list[tuple[str, np.ndarray]] = []
    _visit(model, "", set(), found)
    return found


def save(model, folder: Path) -> tuple[dict[str, list[str]], int, int]:
    """Writes each distinct array of `model` of at least `MIN_BYTES` to `folder` (which exists) as `N.npy`.

    Returns `({file name: [paths]}, shared bytes, private bytes)`: what `attach` takes, the bytes written
    (one copy, whatever the worker count) and those of the smaller arrays each worker keeps to itself."""
    files: dict[int, str] = {}
    written: dict[str, list[str]] = {}
    shared = private = 0
    counted: set[int] = set()
    for path, array in arrays(model):
        if array.nbytes < MIN_BYTES or array.dtype.hasobject:
            if id(array) not in counted:
                counted.add(id(array))
                private += array.nbytes
            continue
        name = files.get(id(array))
        if name is None:
            name = files[id(array)] = f"{len(files)}.npy"
            np.save(folder / name, np.ascontiguousarray(array), allow_pickle=False)
            shared += array.nbytes
            written[name] = []
        written[name].append(path)
    return written, shared, private


def _swap(value, path: str, maps: dict[str, np.ndarray], seen: set[int]):
    """`value` with every array at a path of `maps` replaced by its map: containers and objects are changed in
    place (frozen dataclasses too), a tuple is rebuilt when a member changed."""
    if isinstance(value, np.ndarray):
        mapped = maps.get(path)
        return mapped if mapped is not None else value
    if id(value) in seen:
        return value
    if isinstance(value, dict):
        seen.add(id(value))
        for key, child in list(value.items()):
            new = _swap(child, f"{path}[{key!r}]", maps, seen)
            if new is not child:
                value[key] = new
    elif type(value) is list:
        seen.add(id(value))
        for n, child in enumerate(value):
            new = _swap(child, f"{path}[{n}]", maps, seen)
            if new is not child:
                value[n] = new
    elif type(value) is tuple:
        seen.add(id(value))
        members = [_swap(child, f"{path}[{n}]", maps, seen) for n, child in enumerate(value)]
        if any(new is not old for new, old in zip(members, value)):
            return tuple(members)
    elif _walked(value):
        seen.add(id(value))
        for name, child in list(vars(value).items()):
            new = _swap(child, f"{path}.{name}", maps, seen)
            if new is not child:
                object.__setattr__(value, name, new)
    return value


class Mismatch(Exception):
    """The model built here is not the one whose arrays were saved: a path holds an array of another shape or
    type."""


def attach(model, folder: Path, files: dict[str, list[str]]) -> int:
    """Swaps `model`'s arrays at the paths `files` names (`save`'s) for read-only maps of `folder`'s files, so
    that the private copies are freed once nothing else holds them. Returns the bytes mapped.

    A path `model` lacks is left: a cache the saving worker had filled on first use (a metadata column's
    inverted index) and this one will fill when it needs it. Raises `Mismatch` before changing anything when
    `model` holds at a path an array of another shape or dtype than the file's."""
    maps: dict[str, np.ndarray] = {}
    mapped = 0
    here = {path: array for path, array in arrays(model)}
    for name, paths in files.items():
        paths = [path for path in paths if path in here]
        if not paths:
            continue
        data = np.load(folder / name, mmap_mode="r", allow_pickle=False).view(np.ndarray)
        for path in paths:
            own = here[path]
            if own.shape != data.shape or own.dtype != data.dtype:
                raise Mismatch(f"{path}: {own.dtype}{list(own.shape)} here, {data.dtype}{list(data.shape)} saved")
            maps[path] = data
        mapped += data.nbytes
    _swap(model, "", maps, set())
    return mapped
