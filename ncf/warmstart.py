"""Incremental training: a job that starts from a previous model's weights instead of a fresh initialisation.

SageMaker's convention for it is a `model` channel holding the previous job's `model.tar.gz`; locally it is a
model folder. The new job's vocabularies hold the old ids and the new data's (`dataset.prepare`'s
`known_users`, `known_items`): every id the old model knew keeps its trained row, new ids start as a fresh
model's rows do, and the dense weights (MLP, head, MF's global bias) start as trained. The optimiser
continues where the old job's ended when its model folder holds `optimizer.npz`: Adam's moments of every kept
row and dense weight, zero for new rows, and its step count. Restarted instead (fresh moments), Adam's first
steps move every weight by about the full learning rate whatever its gradient, and the warm jobs lost
quality for it (docs/benchmarks.md, "Warm start").

The model's kind and the hyperparameters that shape its weights (`SHAPES`) come from the old model: a job
that does not set them inherits them, one that sets them otherwise is refused, naming the mismatch. So is a
shape the old kind does not have (`mlp_layers` for MF or GMF, `factors` for MLP) set to anything but the old
job's own value: it could not apply, and whoever set it expected a model it is not.

Item metadata carries over too: a job given no items table keeps the old model's, rebuilt over the new
vocabulary (`carried_metadata`), so that filters keep working on a model that was only retrained.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Callable, Iterable

import numpy as np

from .artifacts import ModelArtifact
from .errors import ConfigError
from .metadata import ItemMetadata
from .vocab import Vocabulary

log = logging.getLogger(__name__)

#: The hyperparameters that decide the shapes of the weights, per model kind.
SHAPES = {"neumf": ("factors", "mlp_layers"), "gmf": ("factors",), "mlp": ("mlp_layers",), "mf": ("factors",)}
#: What a kind without one of the shapes lacks, for the message that refuses setting it.
LACKS = {"factors": "factor embeddings (GMF or MF)", "mlp_layers": "MLP"}


def inherited(config, artifact: ModelArtifact, given: Iterable[str]):
    """`config` (a `TrainConfig`) with the old model's kind and shapes where the job did not set them; a set
    one that differs raises `ConfigError`."""
    old = artifact.metadata.get("hyperparameters", {})
    kind = artifact.kind
    given = set(given)
    if "model" in given and config.model != kind:
        raise ConfigError(f"warm start: model={config.model} but the model it starts from is {kind}; leave "
                          "'model' out, or train afresh")
    if config.pretrain not in ("auto", "none"):
        raise ConfigError(f"warm start: pretrain={config.pretrain} would replace the weights it starts from; "
                          "leave it out")
    shapes = {"model": kind}
    for key in SHAPES[kind]:
        if key not in old:
            raise ConfigError(f"warm start: the model's metadata.json does not say its {key!r}")
        value = tuple(old[key]) if isinstance(old[key], list) else old[key]
        if key in given and getattr(config, key) != value:
            raise ConfigError(f"warm start: {key}={getattr(config, key)} but the model it starts from has "
                              f"{key}={value}; a warm start keeps the model's shapes: leave {key!r} out, or "
                              "train afresh")
        shapes[key] = value
    for key, lacks in LACKS.items():
        # Equal to the old job's own value passes: its hyperparameters.json, reused as it is, sets every key.
        recorded = tuple(old[key]) if isinstance(old.get(key), list) else old.get(key)
        if key in given and key not in SHAPES[kind] and getattr(config, key) != recorded:
            raise ConfigError(f"warm start: {key}={getattr(config, key)} but the model it starts from is {kind}, "
                              f"which has no {lacks}; leave {key!r} out, or train afresh")
    return replace(config, **shapes)


def initialiser(artifact: ModelArtifact, users: Vocabulary, items: Vocabulary) -> Callable:
    """`initialise(model, optimizer)`: the old weights into a freshly built model over `users` x `items`, and
    the old optimiser state into its built optimiser where both have one (`LazyAdam`; else it starts afresh)."""
    from .models import import_weights

    user_rows = artifact.users.lookup_array(users.ids)
    item_rows = artifact.items.lookup_array(items.ids)

    def initialise(model, optimizer) -> None:
        import_weights(model, artifact.weights, user_rows, item_rows)
        state = artifact.optimizer
        if state is None or not hasattr(optimizer, "moments"):
            log.info("warm start: the optimiser starts afresh (%s)", "the model folder holds no optimizer.npz"
                     if state is None else "this optimiser's state is not carried over")
            return
        for n, prefix in enumerate(("m/", "v/")):
            moments = {name[len(prefix):]: value for name, value in state.items() if name.startswith(prefix)}
            import_weights(model, moments, user_rows, item_rows, target_of=lambda v: optimizer.moments(v)[n])
        optimizer.iterations.assign(int(state["iterations"]))
        log.info("warm start: the optimiser continues after step %d", int(state["iterations"]))

    return initialise


def rows_kept(users: Vocabulary, items: Vocabulary, artifact: ModelArtifact) -> dict:
    """How many of the new vocabularies' ids the old model knew: for the job's log."""
    return {"users": int((artifact.users.lookup_array(users.ids) >= 0).sum()), "of_users": len(users),
            "items": int((artifact.items.lookup_array(items.ids) >= 0).sum()), "of_items": len(items)}



def carried_metadata(artifact: ModelArtifact, items: Vocabulary) -> ItemMetadata | None:
    """The old model's item metadata over the new item vocabulary `items` (None when it had none): every row
    it held, its model items' and its metadata-only ones, matched to the new items by id as an items table's
    rows are (`ncf.items.item_rows`), so that an item the old job knew only from metadata is described once
    the new data trains it."""
    from .items import item_rows

    old = artifact.item_metadata
    if old is None:
        return None
    ids, columns = old.rows([str(i) for i in artifact.items.ids.tolist()])
    return ItemMetadata.from_table(item_rows(np.array(ids, dtype=str), items), ids, columns, len(items))
