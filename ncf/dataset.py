"""From raw interactions to what training and evaluation need: indices, splits and seen-item matrices.

Implicit feedback: every remaining interaction is a positive. A (user, item) pair seen several times counts
once, at its latest time, so a held-out item never also sits in training. Held-out channels given separately
are authoritative in the same way: a pair of the `test` channel leaves training and validation, a pair of the
`validation` channel leaves training, and a pair repeated inside a held-out channel counts once. Otherwise
repeat use (re-watches, repeat purchases, a time split of an event log) would score the model on items it
trained on, and full-ranking metrics, which mask what trained, could never count the held-out item a hit.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace

import numpy as np

from .arrays import unique
from .data import Interactions
from .errors import DataError
from .seen import SeenItems
from .splits import chronological_order, leave_last_k
from .vocab import Vocabulary, integer_ids

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pairs:
    """Parallel `[n]` int64 arrays of user and item indices."""

    user: np.ndarray
    item: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class Dataset:
    """Indexed interactions split for training, validation and test.

    Attributes:
        seen: every interaction (all splits): candidates for evaluation are drawn outside it, and serving
            excludes it from recommendations.
        train_seen: the training interactions alone: training negatives are drawn outside it, so that held-out
            items never leak into training as known negatives.
        popularity: `[n_items]` training interactions per item (popularity baseline, cold start).
    """

    users: Vocabulary
    items: Vocabulary
    train: Pairs
    validation: Pairs | None
    test: Pairs
    seen: SeenItems
    train_seen: SeenItems
    popularity: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def fingerprint(self) -> int:
        """A 48-bit digest of the vocabularies and splits: hosts of one job compare it before training together."""
        digest = hashlib.sha256()
        parts = [self.users.ids, self.items.ids, self.train.user, self.train.item, self.test.user, self.test.item]
        if self.validation is not None:
            parts += [self.validation.user, self.validation.item]
        for part in parts:
            digest.update(np.ascontiguousarray(part).tobytes())
        return int.from_bytes(digest.digest()[:6], "big")

    def with_validation_in_train(self) -> "Dataset":
        """The same data with validation folded into training and no validation: what a refit trains on.

        Validation holds each user's latest training interaction, the most telling of their current taste; a
        model early-stopped on it should still learn from it before it ships. The test split stays held out.
        """
        if self.validation is None:
            return self
        return self._fold_into_train(np.ones(len(self.validation), dtype=bool))

    def seen_before_test(self, users: np.ndarray | None = None) -> SeenItems:
        """Every user's training and validation items: what full-ranking test metrics exclude, since the
        evaluated model trained on them or was selected on them (and a served model excludes all it saw).

        `users`: only their rows are filled (the others are empty). Full ranking evaluates a sample of users
        (`evaluation.TestSample`: ~850 of ml-25m's 162k), and building every user's rows costs a sort of all
        the training keys, enough at 23M interactions to lift the job's peak past its memory budget in the final
        evaluation (commit e8d9e3d), where these users' rows cost a mask over the pairs."""
        parts = [self.train] + ([self.validation] if self.validation is not None else [])
        if users is not None:
            wanted = np.zeros(self.n_users, dtype=bool)
            wanted[users] = True
            keeps = [wanted[part.user] for part in parts]
            parts = [Pairs(part.user[keep], part.item[keep]) for part, keep in zip(parts, keeps)]
        return SeenItems.from_pairs(np.concatenate([part.user for part in parts]),
                                    np.concatenate([part.item for part in parts]), self.n_users, self.n_items)

    def with_validation_users(self, max_users: int, seed: int = 0) -> "Dataset":
        """Validation kept for at most `max_users` users drawn with `seed`; every other user's validation rows
        go back into training (the same data when there are fewer users).

        Early stopping ranks a fixed sample of users (its cost would otherwise grow with the data); holding out
        the interactions of users it never ranks would only take them from training, and make a refit (as
        costly as the whole search) look necessary to learn them. Costs a sort of the training keys.
        """
        if self.validation is None:
            return self
        users = unique(self.validation.user)
        if len(users) <= max_users:
            return self
        chosen = np.zeros(self.n_users, dtype=bool)
        chosen[np.random.default_rng(seed).choice(users, max_users, replace=False)] = True
        folded = self._fold_into_train(~chosen[self.validation.user])
        kept = chosen[self.validation.user]
        return replace(folded, validation=Pairs(self.validation.user[kept], self.validation.item[kept]))

    def _fold_into_train(self, rows: np.ndarray) -> "Dataset":
        """Validation's `rows` (a mask) moved into training; training's seen items and popularity follow."""
        key = unique(np.concatenate([self.train.user * self.n_items + self.train.item,
                                     self.validation.user[rows] * self.n_items + self.validation.item[rows]]))
        user, item = key // self.n_items, key % self.n_items  # a pair in both (separate channels) counts once
        return replace(self, train=Pairs(user, item), validation=None,
                       train_seen=SeenItems.from_pairs(user, item, self.n_users, self.n_items),
                       popularity=np.bincount(item, minlength=self.n_items).astype(np.int64))

    def statistics(self) -> dict:
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": int(len(self.seen.indices)),
            "train": len(self.train),
            "validation": 0 if self.validation is None else len(self.validation),
            "test": len(self.test),
            "density": float(len(self.seen.indices) / max(1, self.n_users * self.n_items)),
        }


def prepare(
    interactions: Interactions, *, test_k: int = 1, validation_k: int = 1, min_rating: float | None = None,
    validation: Interactions | None = None, test: Interactions | None = None,
    known_users: Vocabulary | None = None, known_items: Vocabulary | None = None,
) -> Dataset:
    """Index, deduplicate and split.

    Args:
        test_k: latest interactions per user held out for test (1 = LOO, 10 = the AWS blog's split).
        validation_k: latest remaining interactions per user held out for validation; 0 = no validation.
        min_rating: keep only interactions rated at least this (None = every interaction is a positive).
        validation, test: held-out interactions given separately (SageMaker's optional channels), used as
            they are instead of being carved from `interactions`. Their rows whose user or item never occurs
            in `interactions` are dropped (logged): the model has learned nothing about them. They are
            authoritative: a test pair leaves training and validation, a validation pair leaves training, and
            repeats inside one count once (each logged with its count); a held-out row whose user or item
            then keeps no training pair is dropped too (logged).
        known_users, known_items: vocabularies of a model this data continues (a warm start): the new ones
            hold their ids too, so every id the model knew keeps its row (`ncf.warmstart`), and grow with the
            data's new ids. Vocabularies stay sorted, so an id's index may change; its row goes with it.
    """
    interactions = interactions.with_min_rating(min_rating)
    if len(interactions) == 0:
        raise DataError("no interactions")
    users = _grown(known_users, interactions.users, "user")
    items = _grown(known_items, interactions.items, "item")
    if len(items) < 2:
        raise DataError(f"need at least 2 distinct items to learn a ranking, found {len(items)}")
    # Arrays of the data's length are dropped as soon as they are used: at 23M interactions each int64 one
    # is 184 MB, and this function's peak is the job's (benchmarks/scale.py).
    u, i = users.encode(interactions.users), items.encode(interactions.items)
    order = chronological_order(u, i, interactions.timestamps)
    u = u[order]
    i = i[order]
    del order
    keep = _latest_of_each_pair(u * len(items) + i)
    u = u[keep]
    i = i[keep]
    del keep

    n_users, n_items = len(users), len(items)
    if test is None:
        test_mask = leave_last_k(u, np.arange(len(u)), test_k)
        test_pairs = Pairs(u[test_mask], i[test_mask])
    else:
        test_pairs = _known_pairs(test.with_min_rating(min_rating), users, items, "test")
        test_mask = _held_out(Pairs(u, i), test_pairs, n_users, n_items, "test", "training")
    rest = ~test_mask
    train_mask = rest
    validation_pairs = None
    if validation is not None:
        validation_pairs = _known_pairs(validation.with_min_rating(min_rating), users, items, "validation")
        if test is not None:
            drop = _held_out(validation_pairs, test_pairs, n_users, n_items, "test", "validation")
            validation_pairs = Pairs(validation_pairs.user[~drop], validation_pairs.item[~drop])
        train_mask = rest & ~_held_out(Pairs(u, i), validation_pairs, n_users, n_items, "validation", "training")
    elif validation_k > 0:
        val_in_rest = leave_last_k(u[rest], np.arange(rest.sum()), validation_k)
        val_mask = np.zeros(len(u), dtype=bool)
        val_mask[np.flatnonzero(rest)[val_in_rest]] = True
        train_mask = rest & ~val_mask
        validation_pairs = Pairs(u[val_mask], i[val_mask])
    held = [p for p, given in ((validation_pairs, validation), (test_pairs, test)) if given is not None]
    if held:
        seen = SeenItems.from_pairs(np.concatenate([u] + [p.user for p in held]),
                                    np.concatenate([i] + [p.item for p in held]), n_users, n_items)
    else:
        seen = SeenItems.from_pairs(u, i, n_users, n_items)
    train = Pairs(u[train_mask], i[train_mask])
    del u, i
    if len(train) == 0:
        raise DataError("no training interaction is left: every pair of train is also in the test or "
                        "validation channel")
    if test is not None:
        test_pairs = _trained(test_pairs, train, n_users, n_items, "test")
    if validation is not None:
        validation_pairs = _trained(validation_pairs, train, n_users, n_items, "validation")
        if len(validation_pairs) == 0:
            raise DataError("every validation pair is also a test pair, or of a user or item with no training "
                            "interaction: nothing is left to validate on")
    return Dataset(
        users=users,
        items=items,
        train=train,
        validation=validation_pairs,
        test=test_pairs,
        seen=seen,
        train_seen=SeenItems.from_pairs(train.user, train.item, n_users, n_items),
        popularity=np.bincount(train.item, minlength=n_items).astype(np.int64),
    )


def _grown(known: Vocabulary | None, raw: np.ndarray, what: str) -> Vocabulary:
    """The data's distinct ids, and `known`'s too when given (of the same kind: integers or text)."""
    if known is None:
        return Vocabulary.fit(raw)
    if (known.ids.dtype.kind == "i") != (raw.dtype.kind == "i"):
        kinds = {True: "integers", False: "text"}
        why = ""
        if known.ids.dtype.kind != "i" and integer_ids(known.ids) is not None:
            why = (" (the model read ids of 19 digits as text, as training did before it read them as integers "
                   "by the server's rule: train this model afresh once)")
        raise DataError(f"the warm-start model's {what} ids are {kinds[known.ids.dtype.kind == 'i']}, this data's "
                        f"are {kinds[raw.dtype.kind == 'i']}: they cannot name the same {what}s{why}")
    return Vocabulary.fit(np.concatenate([known.ids, raw]))


def _latest_of_each_pair(key: np.ndarray) -> np.ndarray:
    """Sorted positions of the last row of each distinct `key` (rows are in time order per user, so the
    latest interaction of each pair); the other rows are repeats. Takes `key` over (sorts it in place)."""
    order = np.argsort(key, kind="stable")  # equal keys keep their time order
    key[:] = key[order]
    last = np.empty(len(key), dtype=bool)
    last[-1:] = True
    np.not_equal(key[1:], key[:-1], out=last[:-1])
    keep = order[last]
    keep.sort()
    return keep


def _held_out(pairs: Pairs, held: Pairs, n_users: int, n_items: int, name: str, source: str) -> np.ndarray:
    """`[len(pairs)]` mask of the `pairs` that `held` also holds: they leave `source` (logged, with the count)."""
    mask = SeenItems.from_pairs(held.user, held.item, n_users, n_items).contains(pairs.user, pairs.item)
    if mask.any():
        log.info("%s: %d pairs also in %s leave %s (a held-out channel is authoritative)", name,
                 int(mask.sum()), source, source)
    return mask


def _trained(part: Pairs, train: Pairs, n_users: int, n_items: int, name: str) -> Pairs:
    """`part` less its pairs whose user or item kept no training pair once the held-out pairs left training
    (logged): the model learns nothing of them, as of ids `train` never held (`_known_pairs`)."""
    users, items = np.zeros(n_users, dtype=bool), np.zeros(n_items, dtype=bool)
    users[train.user], items[train.item] = True, True
    keep = users[part.user] & items[part.item]
    if not keep.all():
        log.warning("%s: %d of %d rows dropped: their user or item has no training interaction left once the "
                    "held-out pairs left training", name, int((~keep).sum()), len(keep))
    if name == "test" and not keep.any():
        raise DataError("no test interaction has a user and an item that keep a training interaction")
    return Pairs(part.user[keep], part.item[keep])


def _known_pairs(part: Interactions, users: Vocabulary, items: Vocabulary, name: str) -> Pairs:
    def index(vocab: Vocabulary, raw: np.ndarray) -> np.ndarray:
        if raw.dtype.kind == vocab.ids.dtype.kind:
            return vocab.lookup_array(raw)
        return vocab.lookup(raw.tolist())  # ids typed differently across channels: match by value, slowly

    u, i = index(users, part.users), index(items, part.items)
    known = (u >= 0) & (i >= 0)
    if not known.all():
        log.warning("%s: %d of %d rows dropped: user or item absent from training data", name, (~known).sum(),
                    len(known))
    if not known.any():
        raise DataError(f"no {name} interaction has a user and an item that occur in the training data")
    key = unique(u[known] * len(items) + i[known])  # a pair repeated in a held-out channel counts once
    if len(key) < known.sum():
        log.info("%s: %d repeated rows of one (user, item) pair count once", name, int(known.sum() - len(key)))
    return Pairs(key // len(items), key % len(items))
