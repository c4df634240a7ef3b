"""Recommendations from a list of items: a user's vectors solved against the fixed item side (fold-in).

A trained model knows the users of its training job. A new user with a few clicks, or a known user who acted
after the job ran, is folded in: their user-side embeddings are fitted to the items they interacted with, with
the model's own loss (binary cross-entropy on each given item and `negatives` sampled items per given item,
as training drew them), while every item-side weight stays as trained. Then they are scored like any user.

What is solved for is the user's embedding rows (MF: `p_u` and `b_u`; GMF: `p_u`; MLP: its half of the first
layer's input; NeuMF: both towers'), through the same maps the scorer precomputes (`p_u * w_head` for GMF,
`p_u @ W_user` for the MLP's first layer), by `steps` full-batch Adam steps from a start: the user's trained
rows when they are known, so actions since training count, else the mean user's. An L2 pull of weight `l2`
towards that start keeps one or two items from moving a user to an extreme. Nothing is random but the
negatives, drawn from a generator seeded by the given items: the same input gives the same answer.

The order of the items is not used: NCF scores a user and an item, not a sequence.
Costs: `steps x (1 + negatives) x len(items)` rows through the model's item side and its MLP, forward and
back, then one user against every item, as a trained user (latency: docs/benchmarks.md).
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
    """

    negatives: int = 8
    # Chosen on ml-latest-small's held-out users among 4 settings (benchmarks/foldin.py, docs/benchmarks.md),
    # then run unchanged on ml-100k.
    steps: int = 100
    learning_rate: float = 0.05
    l2: float = 0.001
    max_items: int = 1000

    def __post_init__(self):
        if self.negatives < 0 or self.steps < 0 or self.learning_rate <= 0 or self.l2 < 0 or self.max_items < 1:
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
        seed = int.from_bytes(hashlib.sha256(np.sort(np.asarray(items, np.int64)).tobytes()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
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

    def solve(self, items: np.ndarray, user: int | None = None, excluded: np.ndarray | None = None) -> UserSide:
        """The `UserSide` of a user who interacted with `items` (indices), starting from `user`'s trained rows
        (or the mean user's); negatives avoid `items` and `excluded` (the known user's seen items)."""
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
            return self.side(theta)
        cfg, rows = self.config, self._item_rows(examples)
        m = {name: np.zeros_like(v) for name, v in theta.items()}
        v2 = {name: np.zeros_like(v) for name, v in theta.items()}
        for step in range(1, cfg.steps + 1):
            grads = self._gradients(theta, rows, labels)
            correction = float(np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step))
            for name, g in grads.items():
                g += 2.0 * cfg.l2 * (theta[name] - start[name])
                m[name] *= 0.9
                m[name] += 0.1 * g
                v2[name] *= 0.999
                v2[name] += 0.001 * g * g
                theta[name] -= cfg.learning_rate * correction * m[name] / (np.sqrt(v2[name]) + 1e-7)
        return self.side(theta)

    def _item_rows(self, items: np.ndarray) -> dict:
        """The item side of `items`, gathered once for every step: what `_gradients` reads."""
        s = self.scorer
        return {"items": items,
                "dot": None if s.item_dot is None else s.item_dot[items],
                "bias": None if s.item_bias is None else s.item_bias[items],
                "hidden": None if s.item_hidden is None else s.item_hidden[items]}

    def _gradients(self, theta: dict[str, np.ndarray], rows: dict, labels: np.ndarray) -> dict:
        """Gradients of the mean binary cross-entropy over the gathered item `rows` with `labels`, per
        parameter block (float32 throughout: `[examples, width]` products, a few per step)."""
        s = self.scorer
        side = self.side(theta)
        logits = np.full(len(labels), s.bias, np.float32)
        if side.dot is not None:
            logits += rows["dot"] @ side.dot[0]
        if side.bias is not None:
            logits += side.bias[0] + rows["bias"]
        active = []
        if side.hidden is not None:  # the MLP forward, keeping which units were active for the backward pass
            x = rows["hidden"] + side.hidden[0]
            for kernel, bias in s.layers:
                active.append(x > 0)
                x = np.maximum(x, 0.0) @ kernel + bias
            active.append(x > 0)
            logits += np.maximum(x, 0.0) @ s.mlp_out
        g = (0.5 + 0.5 * np.tanh(0.5 * logits) - labels) / len(labels)  # d mean BCE / d logit (no overflow)
        out: dict[str, np.ndarray] = {}
        if side.dot is not None:
            d_dot = g @ rows["dot"]
            out["mf/user" if s.kind == "mf" else "gmf/user"] = d_dot if s.kind == "mf" else d_dot * s.gmf_head
        if side.bias is not None:
            out["mf/user_bias"] = np.asarray(g.sum(), np.float32)
        if side.hidden is not None:
            delta = np.outer(g, s.mlp_out) * active[-1]
            for (kernel, _), on in zip(reversed(s.layers), reversed(active[:-1])):
                delta = (delta @ kernel.T) * on
            out["mlp/user"] = delta.sum(axis=0) @ s.user_kernel.T
        return out
