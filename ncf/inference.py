"""The forward pass in numpy, so that serving never imports TensorFlow.

Every model here is a sum of parts that split into a user side and an item side:
- GMF through the head: `(p_u * w_g) . q_i`, a dot product of precomputed user and item rows;
- the MLP's first layer: `W [2e, h] = [W_u; W_i]`, so `relu(p_u W_u + q_i W_i + b)` is a sum of a user row
  `[h]` and an item row `[h]`, both precomputed, followed by the (small) remaining layers;
- MF: `p_u . q_i + b_u + b_i + b`.
So scoring one user against every item is a few matrix products over `[n_items, h]` arrays computed once at
load time, not a pass of the whole network per pair. Matches Keras to 1e-5 (tested).

Against every item (`all_items`) the MLP also skips the pass that adds the user's row: with `c` the user's
part of a layer's input and `a` the item's, `relu(a + c) = max(a, -c) + c`, so the next layer's input is
`K^T max(a, -c)` plus `K^T c + b`, a per-user constant. Each layer is then one elementwise pass and one
matrix product, over items laid out as columns (`[h, n_items]`, contiguous along the items) so the pass and
the product run along long rows. With BLAS on one thread, as in a worker, this made a top-10 faster than the
pass that adds the user's row, on ml-latest-small's 9,724 items and on ml-25m's 59,000 alike (commit
2e5672c). (`np.fmax` for the pass, faster than `np.maximum` alone, made no difference to a top-10.) The item
side is kept twice (`item_hidden` for pairs, `item_hidden_columns`): 7.5 MB more at 59,000 items and a
32-wide first layer, shared by the workers forked after loading.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ArtifactError


@dataclass(frozen=True)
class UserSide:
    """A block of users as scoring sees them, `[n, d]` each (None where the model has no such part): the GMF
    or MF row already multiplied by the head (`dot`), MF's bias, and the MLP's first-layer row (`hidden`)."""

    dot: np.ndarray | None
    bias: np.ndarray | None
    hidden: np.ndarray | None


#: Pairs pushed through the MLP per block. Small enough that a block's `[pairs, hidden]` activations stay in
#: cache, which made a top-10 several times faster than blocks of 2^20 pairs (commit 6664047, before the
#: columns form of `all_items`, which blocks the same way).
BLOCK_PAIRS = 1 << 14


class NumpyScorer:
    """Logits of a trained model from its exported weights (see `models.export_weights`)."""

    def __init__(self, kind: str, weights: dict[str, np.ndarray]):
        self.kind = kind
        w = {k: np.asarray(v, dtype=np.float32) for k, v in weights.items()}
        try:
            self._prepare(kind, w)
            self.n_users = len(self.user_dot if self.user_dot is not None else self.user_hidden)
            self.n_items = len(self.item_dot if self.item_dot is not None else self.item_hidden)
            if self.n_users and self.n_items:  # one user through both paths: arrays that do not fit fail here
                first = np.zeros(1, dtype=np.int64)
                shapes = self.pairs(first, first).shape, self.all_items(first).shape
                if shapes != ((1,), (1, self.n_items)):
                    raise ValueError(f"scores come out with shapes {shapes}")
        except KeyError as e:
            raise ArtifactError(f"weights of a {kind!r} model lack the array {e.args[0]!r}") from e
        except (ValueError, IndexError, TypeError) as e:
            raise ArtifactError(f"weights of a {kind!r} model do not fit together ({e})") from e

    def _prepare(self, kind: str, w: dict[str, np.ndarray]) -> None:
        self.user_dot = self.item_dot = None  # parts scored as a dot product
        self.user_bias = self.item_bias = None
        self.user_hidden = self.item_hidden = None  # MLP first layer, split by side
        self.item_hidden_columns = None  # `item_hidden.T`, contiguous: `all_items` reads it
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        self.layers_columns: list[tuple[np.ndarray, np.ndarray]] = []  # `layers` as `(K^T, b[:, None])`
        self.gmf_head = self.user_kernel = None  # user embedding -> `user_dot` / `user_hidden` (fold-in)
        self.mlp_out = None
        self.bias = np.float32(0.0)
        self.item_embeddings = [w[f"{tower}/item"] for tower in ("gmf", "mlp", "mf") if f"{tower}/item" in w]
        if kind == "mf":
            self.user_dot, self.item_dot = w["mf/user"], w["mf/item"]
            self.user_bias, self.item_bias = w["mf/user_bias"], w["mf/item_bias"]
            self.bias = w["mf/bias"].reshape(())
            return
        head = w["head/kernel"][:, 0]
        self.bias = w["head/bias"].reshape(())
        offset = 0
        if kind in ("neumf", "gmf"):
            factors = w["gmf/user"].shape[1]
            self.gmf_head = head[:factors]
            self.user_dot = w["gmf/user"] * self.gmf_head
            self.item_dot = w["gmf/item"]
            offset = factors
        if kind in ("neumf", "mlp"):
            half = w["mlp/user"].shape[1]
            k0 = w["mlp/dense_0/kernel"]
            self.user_kernel = k0[:half]
            self.user_hidden = w["mlp/user"] @ self.user_kernel
            self.item_hidden = w["mlp/item"] @ k0[half:] + w["mlp/dense_0/bias"]
            self.item_hidden_columns = np.ascontiguousarray(self.item_hidden.T)
            n = 1
            while f"mlp/dense_{n}/kernel" in w:
                self.layers.append((w[f"mlp/dense_{n}/kernel"], w[f"mlp/dense_{n}/bias"]))
                n += 1
            self.layers_columns = [(np.ascontiguousarray(k.T), b[:, None]) for k, b in self.layers]
            self.mlp_out = head[offset:]

    def _mlp(self, hidden: np.ndarray) -> np.ndarray:
        """`[..., h0]` pre-activation of the first layer -> `[...]` contribution to the logit.

        Works in place (`hidden` is overwritten): on a top-k over a whole catalogue the temporaries of
        out-of-place ReLUs cost a sizeable share of the MLP's time.
        """
        x = np.maximum(hidden, 0.0, out=hidden)
        for kernel, bias in self.layers:
            x = x @ kernel
            x += bias
            np.maximum(x, 0.0, out=x)
        return x @ self.mlp_out

    def _mlp_columns(self, hidden: np.ndarray, columns: slice) -> np.ndarray:
        """`[users, items]` contribution to the logit of users whose first-layer rows are `hidden` `[users, h0]`
        against the items in `columns`, by the `max(a, -c)` form of the module's docstring."""
        user = hidden[:, :, None]  # c: [users, h, 1]
        x = np.maximum(self.item_hidden_columns[:, columns], -user)  # relu(a + c) - c: [users, h, items]
        for kernel, bias in self.layers_columns:
            user = kernel @ user + bias
            x = kernel @ x
            np.maximum(x, -user, out=x)
        return self.mlp_out @ x + self.mlp_out @ user

    def pairs(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """`[n]` logits of (user, item) index pairs."""
        out = np.full(len(users), self.bias, dtype=np.float32)
        if self.user_dot is not None:
            out += np.einsum("nd,nd->n", self.user_dot[users], self.item_dot[items])
        if self.user_bias is not None:
            out += self.user_bias[users] + self.item_bias[items]
        if self.user_hidden is not None:
            for s in range(0, len(users), BLOCK_PAIRS):
                sl = slice(s, s + BLOCK_PAIRS)
                out[sl] += self._mlp(self.user_hidden[users[sl]] + self.item_hidden[items[sl]])
        return out

    def all_items(self, users: np.ndarray) -> np.ndarray:
        """`[len(users), n_items]` float32 logits of every item for each user.

        The MLP runs over blocks of at most `BLOCK_PAIRS` (user, item) pairs: whole rows of several users when
        the catalogue is small, slices of one user's row when it is larger than a block (59,000 items: 4
        slices), so that a block's activations stay in cache whatever the catalogue's size: on a catalogue
        that size, slices were faster than whole rows (measured before the columns form). Each pair's
        arithmetic is the same either way.
        """
        return self.all_items_of(self.user_side(users))

    def user_side(self, users: np.ndarray) -> "UserSide":
        """The rows of `users` that scoring reads: what a folded-in user (`foldin`) is solved for."""
        return UserSide(dot=None if self.user_dot is None else self.user_dot[users],
                        bias=None if self.user_bias is None else self.user_bias[users],
                        hidden=None if self.user_hidden is None else self.user_hidden[users])

    def pairs_of(self, side: "UserSide", items: np.ndarray) -> np.ndarray:
        """`[len(items)]` logits of the one user in `side` against `items`."""
        out = np.full(len(items), self.bias, dtype=np.float32)
        if side.dot is not None:
            out += self.item_dot[items] @ side.dot[0]
        if side.bias is not None:
            out += side.bias[0] + self.item_bias[items]
        if side.hidden is not None:
            out += self._mlp(side.hidden[0][None, :] + self.item_hidden[items])
        return out

    def candidates_of(self, side: "UserSide", items: np.ndarray) -> np.ndarray:
        """`[rows, m]` float32 logits of each user of `side` against that row of `items` `[rows, m]` (item
        indices; -1 marks no candidate and scores -inf): the second stage of two-stage top-k (`retrieval`),
        `pairs_of` for a block of users at once, so the MLP runs on `BLOCK_PAIRS` pairs at a time."""
        rows, m = items.shape
        valid = items >= 0
        items = np.where(valid, items, 0)
        out = np.full((rows, m), self.bias, dtype=np.float32)
        if side.dot is not None:
            out += np.matmul(self.item_dot[items], side.dot[:, :, None])[:, :, 0]
        if side.bias is not None:
            out += side.bias[:, None] + self.item_bias[items]
        if side.hidden is not None:
            flat, user, logits = items.reshape(-1), np.repeat(np.arange(rows), m), out.reshape(-1)
            for s in range(0, len(flat), BLOCK_PAIRS):
                sl = slice(s, s + BLOCK_PAIRS)
                logits[sl] += self._mlp(side.hidden[user[sl]] + self.item_hidden[flat[sl]])
        out[~valid] = -np.inf
        return out

    def all_items_of(self, side: "UserSide") -> np.ndarray:
        """`all_items` for users given by their `UserSide` rows instead of their indices."""
        n = len(next(part for part in (side.dot, side.bias, side.hidden) if part is not None))
        out = np.full((n, self.n_items), self.bias, dtype=np.float32)
        if side.dot is not None:
            out += side.dot @ self.item_dot.T
        if side.bias is not None:
            out += side.bias[:, None] + self.item_bias[None, :]
        if side.hidden is not None:
            rows = max(1, BLOCK_PAIRS // self.n_items)
            columns = min(self.n_items, BLOCK_PAIRS)
            for s in range(0, n, rows):
                for c in range(0, self.n_items, columns):
                    block = slice(c, c + columns)
                    out[s:s + rows, block] += self._mlp_columns(side.hidden[s:s + rows], block)
        return out

    def item_vectors(self) -> np.ndarray:
        """`[n_items, d]` unit item vectors for similar-item search: each tower's item embedding,
        L2-normalised so neither tower dominates, concatenated, and normalised again (so a dot is a cosine)."""
        parts = [e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12) for e in self.item_embeddings]
        joined = np.concatenate(parts, axis=1)
        return joined / np.maximum(np.linalg.norm(joined, axis=1, keepdims=True), 1e-12)
