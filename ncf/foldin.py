"""Recommendations from a list of items: a user's vectors solved against the fixed item side (fold-in).

A trained model knows the users of its training job. A new user with a few clicks, or a known user who acted
after the job ran, is folded in: their user-side embeddings are fitted to the items they interacted with, with
the model's own loss (binary cross-entropy on each given item and `negatives` sampled items per given item,
as training drew them), while every item-side weight stays as trained. Then they are scored like any user.

What is solved for is the user's embedding rows (MF: `p_u` and `b_u`; GMF: `p_u`; MLP: its half of the first
layer's input; NeuMF: both towers'), through the same maps the scorer precomputes (`p_u * w_head` for GMF,
`p_u @ W_user` for the MLP's first layer), by `steps` full-batch Adam steps from a start: the user's trained
rows when they are known, else the mean user's. An L2 pull of weight `l2` towards that start keeps one or two
items from moving a new user to an extreme. Nothing is random but the sampled items, drawn from generators
seeded by the items given (and the history): the same input gives the same answer.

A known user's latest actions are added to what the model knew, not fitted alone: their history (the items
the job saw them with) stays in the objective as its second-order expansion about their trained rows
(`FoldIn.prior`, a Laplace posterior: `(theta - start)^T H (theta - start) / 2`, `H` the Gauss-Newton
curvature of the history's loss, from at most `history` of its items and their sampled items, scaled to all
of it). The given items' examples weigh `recency` times a history example's. So a click the history already
supports (their own top-1) barely moves them, and one it does not moves them as far as one item among their
hundred should. Before, the history was only the start, and the L2 pull did not hold it: one click on a user's
own top-1 replaced a sizeable share of the rest of their top 10 (docs/benchmarks.md, Tried and rejected).

The order of the items is not used: NCF scores a user and an item, not a sequence.
Costs: `steps x (1 + negatives) x len(items)` rows through the model's item side and its MLP, forward and
back, then one user against every item, as a trained user; for a known user also one pass, forward and back,
of `min(history, seen items) x (1 + negatives)` rows and a `[dim, dim]` product per step (`dim` the user's
parameters: 96 for the default NeuMF). Latency: docs/benchmarks.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .inference import NumpyScorer, UserSide


@dataclass(frozen=True)
class FoldInConfig:
    """Args:
        negatives: sampled items per given item (training's default ratio).
        steps, learning_rate: full-batch Adam from the start.
        l2: weight of `|theta - start|^2` against the mean loss per example.
        max_items: the most items one request may give (more is a client error).
        history: the most of a known user's seen items sampled for their history's curvature
            (`FoldIn.prior`): the cap on a known user's extra cost.
        recency: weight of each given item's examples against each of the history's, for a known user.
    """

    negatives: int = 8
    # Chosen on ml-latest-small's held-out users among 4 settings (benchmarks/foldin.py, docs/benchmarks.md),
    # then run unchanged on ml-100k.
    steps: int = 100
    learning_rate: float = 0.05
    l2: float = 0.001
    max_items: int = 1000
    # Known users: chosen on ml-latest-small among recency 1, 2, 3 and 5 (and without the history), then run
    # unchanged on ml-100k (docs/benchmarks.md, Fold-in and Tried and rejected). 2: a click since training
    # weighs twice an old one; 1 held the top 10 best but added items since training to NeuMF worse than 2-5;
    # 3 and 5 kept less for no gain. A sample of 100 items kept what 200 did, within noise, at less of the
    # curvature's cost; 50 began to slip. The history (its curvature, then its pull at every step) makes a
    # known user's fold-in cost a few milliseconds more than a new user's (latencies: docs/benchmarks.md).
    history: int = 100
    recency: float = 2.0

    def __post_init__(self):
        if (self.negatives < 0 or self.steps < 0 or self.learning_rate <= 0 or self.l2 < 0 or self.max_items < 1
                or self.history < 0 or not self.recency > 0):
            raise ConfigError(f"fold-in settings out of range: {self}")


class FoldIn:
    """Solves a user's `UserSide` from item indices, for the scorer of a loaded model.

    Args:
        scorer: the model's `NumpyScorer` (its item side and precomputed maps are used as they are).
        weights: the model's exported arrays (`models.export_weights`): the trained user rows to start from.
    """

    def __init__(self, scorer: NumpyScorer, weights: dict[str, np.ndarray], config: FoldInConfig = FoldInConfig()):
        self.scorer, self.config = scorer, config
        kind = scorer.kind
        #: The user's parameter blocks: name -> trained rows `[n_users, d]` (`[n_users]` for MF's bias).
        names = {"mf": ["mf/user", "mf/user_bias"], "gmf": ["gmf/user"], "mlp": ["mlp/user"],
                 "neumf": ["gmf/user", "mlp/user"]}[kind]
        self.rows = {name: np.asarray(weights[name], np.float32) for name in names}
        self.mean = {name: rows.mean(axis=0) if len(rows) else np.zeros(rows.shape[1:], np.float32)
                     for name, rows in self.rows.items()}
        #: Where each block lies in the flat `[dim]` vector (`_flat`): name, slice, the block's shape.
        self.layout, at = [], 0
        for name, rows in self.rows.items():
            size = int(np.prod(rows.shape[1:], dtype=np.int64))
            self.layout.append((name, slice(at, at + size), rows.shape[1:]))
            at += size

    def start(self, user: int | None) -> dict[str, np.ndarray]:
        """The parameters to start from: the known user's trained rows, else the mean user's."""
        source = self.mean if user is None else {name: rows[user] for name, rows in self.rows.items()}
        return {name: np.array(value, dtype=np.float32) for name, value in source.items()}

    def negatives(self, items: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        """`negatives` items per given item, uniform over the items not in `excluded`, seeded by `items`."""
        n_items = self.scorer.n_items
        want = self.config.negatives * len(items)
        allowed = np.ones(n_items, bool)
        allowed[excluded] = False
        if want == 0 or not allowed.any():
            return np.zeros(0, np.int64)
        rng = np.random.default_rng(_seed(items))
        # Rejection in rounds: a few redraws when the excluded items are few, the allowed list when many.
        if allowed.mean() > 0.5:
            drawn = rng.integers(0, n_items, want)
            for _ in range(8):
                bad = ~allowed[drawn]
                if not bad.any():
                    return drawn
                drawn[bad] = rng.integers(0, n_items, int(bad.sum()))
        return rng.choice(np.flatnonzero(allowed), want)

    def side(self, theta: dict[str, np.ndarray]) -> UserSide:
        """`theta` (one user's parameters) as the scorer's `UserSide` rows, `[1, d]`."""
        s, kind = self.scorer, self.scorer.kind
        as_row = lambda v: np.asarray(v, np.float32)[None]  # noqa: E731
        if kind == "mf":
            return UserSide(dot=as_row(theta["mf/user"]), bias=as_row(theta["mf/user_bias"]), hidden=None)
        return UserSide(
            dot=as_row(theta["gmf/user"] * s.gmf_head) if "gmf/user" in theta else None, bias=None,
            hidden=as_row(theta["mlp/user"] @ s.user_kernel) if "mlp/user" in theta else None)

    def solve(self, items: np.ndarray, user: int | None = None, excluded: np.ndarray | None = None,
              history: np.ndarray | None = None) -> UserSide:
        """The `UserSide` of a user who interacted with `items` (indices): `side(fit(...))`."""
        return self.side(self.fit(items, user, excluded, history))

    def fit(self, items: np.ndarray, user: int | None = None, excluded: np.ndarray | None = None,
            history: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The parameters of a user who interacted with `items` (indices), starting from `user`'s trained rows
        (or the mean user's); negatives avoid `items` and `excluded` (the known user's seen items). A known
        user's `history` (their seen items) stays in the objective as its curvature at the start (`prior`)."""
        items = np.unique(np.asarray(items, np.int64))  # a set: order and repeats do not change the answer
        if len(items) > self.config.max_items:
            raise ConfigError(f"at most {self.config.max_items} items can be folded in, got {len(items)}")
        avoid = items if excluded is None else np.concatenate([items, np.asarray(excluded, np.int64)])
        examples = np.concatenate([items, self.negatives(items, avoid)])
        labels = np.zeros(len(examples), np.float32)
        labels[:len(items)] = 1.0
        start = self.start(user)
        theta = {name: value.copy() for name, value in start.items()}
        if len(items) == 0:
            return theta
        cfg, rows = self.config, self._item_rows(examples)
        prior = None if user is None or history is None else self.prior(start, history, items, excluded)
        if prior is not None:  # the given items' mean loss, reweighted against the history's examples
            curvature, count = prior
            total = cfg.recency * len(labels) + count
            scale, curvature = np.float32(cfg.recency * len(labels) / total), curvature / np.float32(total)
            flat_start = self._flat(start)
        m = {name: np.zeros_like(v) for name, v in theta.items()}
        v2 = {name: np.zeros_like(v) for name, v in theta.items()}
        for step in range(1, cfg.steps + 1):
            grads = self._gradients(theta, rows, labels)
            if prior is not None:  # one product on the flat vector: cheaper than through dicts of blocks
                pull = curvature @ (self._flat(theta) - flat_start)
                grads = {name: scale * grads[name] + pull[part].reshape(shape) for name, part, shape in self.layout}
            correction = float(np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step))
            for name, g in grads.items():
                g += 2.0 * cfg.l2 * (theta[name] - start[name])
                m[name] *= 0.9
                m[name] += 0.1 * g
                v2[name] *= 0.999
                v2[name] += 0.001 * g * g
                theta[name] -= cfg.learning_rate * correction * m[name] / (np.sqrt(v2[name]) + 1e-7)
        return theta

    def prior(self, start: dict[str, np.ndarray], history: np.ndarray, items: np.ndarray,
              excluded: np.ndarray | None = None) -> tuple[np.ndarray, float] | None:
        """A known user's history as what it weighs at their trained rows: the Gauss-Newton curvature
        `sum_e p_e (1 - p_e) J_e J_e^T` of its loss (`J_e` the logit's gradient in the flat parameters,
        `[dim]`), over at most `history` of their seen items (those not given now, drawn seeded by them) and
        `negatives` sampled items each, scaled to all their items; and the examples it stands for. The loss
        the fold-in minimises is then the given items' plus `(theta - start)^T H (theta - start) / 2`, the
        second-order expansion of the history's about the start: a Laplace posterior, so that an item the
        history already supports moves the user little and one it does not, more. None when there is no
        history. Costs one forward and backward pass of `history x (1 + negatives)` rows and a `[dim, dim]`
        product, once per request, then a `[dim, dim]` product per step."""
        seen = np.setdiff1d(np.asarray(history, np.int64), items)
        if len(seen) == 0 or self.config.history == 0:
            return None
        sample = seen
        if len(seen) > self.config.history:
            rng = np.random.default_rng(_seed(seen))
            sample = np.sort(rng.choice(seen, self.config.history, replace=False))
        avoid = np.concatenate([seen, items] + ([] if excluded is None else [np.asarray(excluded, np.int64)]))
        examples = np.concatenate([sample, self.negatives(sample, avoid)])
        logits, jacobian = self._jacobian(start, self._item_rows(examples))
        p = 0.5 + 0.5 * np.tanh(0.5 * logits)
        weighted = jacobian * (p * (1 - p) * np.float32(len(seen) / len(sample)))[:, None]
        return weighted.T @ jacobian, float(len(seen) * len(examples) / len(sample))

    def _flat(self, theta: dict[str, np.ndarray]) -> np.ndarray:
        """The parameter blocks as one `[dim]` vector (`layout`)."""
        return np.concatenate([np.ravel(theta[name]) for name, _, _ in self.layout])

    def _blocks(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """`_flat`'s inverse."""
        return {name: flat[part].reshape(shape) for name, part, shape in self.layout}

    def _item_rows(self, items: np.ndarray) -> dict:
        """The item side of `items`, gathered once for every step: what `_gradients` reads."""
        s = self.scorer
        return {"items": items,
                "dot": None if s.item_dot is None else s.item_dot[items],
                "bias": None if s.item_bias is None else s.item_bias[items],
                "hidden": None if s.item_hidden is None else s.item_hidden[items]}

    def _forward(self, side: UserSide, rows: dict) -> tuple[np.ndarray, list]:
        """`[examples]` logits of `side` against the gathered item `rows`, and the MLP's active units per layer
        (for the backward pass)."""
        s = self.scorer
        logits = np.full(len(rows["items"]), s.bias, np.float32)
        if side.dot is not None:
            logits += rows["dot"] @ side.dot[0]
        if side.bias is not None:
            logits += side.bias[0] + rows["bias"]
        active = []
        if side.hidden is not None:
            x = rows["hidden"] + side.hidden[0]
            for kernel, bias in s.layers:
                active.append(x > 0)
                x = np.maximum(x, 0.0) @ kernel + bias
            active.append(x > 0)
            logits += np.maximum(x, 0.0) @ s.mlp_out
        return logits, active

    def _backward(self, delta: np.ndarray, active: list) -> np.ndarray:
        """The MLP's backward pass from `delta` (`[examples, last width]`, at the last layer's output) to the
        first layer's user half: `[examples, first width]`."""
        delta = delta * active[-1]
        for (kernel, _), on in zip(reversed(self.scorer.layers), reversed(active[:-1])):
            delta = (delta @ kernel.T) * on
        return delta

    def _jacobian(self, theta: dict[str, np.ndarray], rows: dict) -> tuple[np.ndarray, np.ndarray]:
        """`[examples]` logits and `[examples, dim]` their gradients in the flat parameters (`_flat`'s order)."""
        s = self.scorer
        logits, active = self._forward(self.side(theta), rows)
        parts = {}
        if s.kind == "mf":
            parts = {"mf/user": rows["dot"], "mf/user_bias": np.ones((len(logits), 1), np.float32)}
        elif "gmf/user" in theta:
            parts["gmf/user"] = rows["dot"] * s.gmf_head
        if "mlp/user" in theta:
            delta = self._backward(np.broadcast_to(s.mlp_out, (len(logits), len(s.mlp_out))), active)
            parts["mlp/user"] = delta @ s.user_kernel.T
        return logits, np.concatenate([parts[name] for name, _, _ in self.layout], axis=1).astype(np.float32)

    def _gradients(self, theta: dict[str, np.ndarray], rows: dict, labels: np.ndarray) -> dict:
        """Gradients of the mean binary cross-entropy over the gathered item `rows` with `labels`, per
        parameter block (float32 throughout: `[examples, width]` products, a few per step)."""
        s = self.scorer
        side = self.side(theta)
        logits, active = self._forward(side, rows)
        g = (0.5 + 0.5 * np.tanh(0.5 * logits) - labels) / len(labels)  # d mean BCE / d logit (no overflow)
        out: dict[str, np.ndarray] = {}
        if side.dot is not None:
            d_dot = g @ rows["dot"]
            out["mf/user" if s.kind == "mf" else "gmf/user"] = d_dot if s.kind == "mf" else d_dot * s.gmf_head
        if side.bias is not None:
            out["mf/user_bias"] = np.asarray(g.sum(), np.float32)
        if side.hidden is not None:
            out["mlp/user"] = self._backward(np.outer(g, s.mlp_out), active).sum(axis=0) @ s.user_kernel.T
        return out


def _seed(items: np.ndarray) -> int:
    """A generator's seed from a set of item indices (their order does not matter)."""
    return int.from_bytes(hashlib.sha256(np.sort(np.asarray(items, np.int64)).tobytes()).digest()[:8], "little")
