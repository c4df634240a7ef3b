"""Defaults that follow the data: what a job leaves at `auto` is chosen from the size of its training data.

Every fixed default was chosen on MovieLens (~100k interactions) and checked at ml-25m's size (23M). On a
pilot's few thousand interactions, batch 4,096 makes ~18 optimiser steps an epoch: early stopping ends the
search before the model has moved far from its start, and it ranks like popularity (benchmarks/shapes.py).
The rule keeps the optimiser's steps per epoch, not the batch, from falling: the largest power-of-two batch
that still makes `MIN_STEPS_PER_EPOCH` steps of an epoch's examples (positives and their negatives), within
`BATCH_SIZES`. MovieLens' sets and anything larger keep 4,096, so the measurements behind it stand.

A value the job sets is used as it is; each choice is logged with its reason, and the resolved values are
what the model's metadata and `hyperparameters.json` record, so a job can be rerun exactly.
"""

from __future__ import annotations

import math
from dataclasses import replace

#: Optimiser steps an epoch should make at least (data permitting, within `BATCH_SIZES`).
MIN_STEPS_PER_EPOCH = 100
#: The batch sizes `auto` chooses from: below 256 a step's fixed cost dominates; 4,096 is MovieLens' default.
BATCH_SIZES = (256, 4096)
AUTO = "auto"
#: The settings `resolved` may change: what a job's hyperparameters.json records as resolved, and nothing else
#: (`pretrain=auto` stays `auto`, so the file can start a warm start as it is).
RESOLVED = ("batch_size",)


def auto_batch_size(examples_per_epoch: int) -> int:
    """The largest power of two within `BATCH_SIZES` that makes at least `MIN_STEPS_PER_EPOCH` steps."""
    low, high = BATCH_SIZES
    fits = max(examples_per_epoch // MIN_STEPS_PER_EPOCH, 1)
    return int(min(high, max(low, 2 ** int(math.log2(fits)))))


def resolved(config, train_interactions: int):
    """`config` (a `TrainConfig`) with every `auto` size replaced by its value for `train_interactions`
    training pairs, and the reasons, one line per choice: `(config, {name: reason})`."""
    reasons = {}
    if config.batch_size == AUTO:
        examples = train_interactions * (1 + config.negatives)
        batch = auto_batch_size(examples)
        config = replace(config, batch_size=batch)
        reasons["batch_size"] = (f"{batch}: {examples:,} examples an epoch ({train_interactions:,} pairs x "
                                 f"{1 + config.negatives}) make {-(-examples // batch):,} steps (aim: at least "
                                 f"{MIN_STEPS_PER_EPOCH}, batch within {BATCH_SIZES[0]}-{BATCH_SIZES[1]})")
    return config, reasons
