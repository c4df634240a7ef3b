"""Raw ids <-> contiguous indices, kept with the model.

The AWS sample fed raw MovieLens ids straight into one-hot vectors of a fixed width, so every movie id
above that width lost its identity. Here an embedding row exists only through a `Vocabulary`, and the outside
world only ever sees raw ids.

The vocabulary is the sorted array of distinct raw ids (int64 or unicode), so an id's index is its rank:
lookups are one `np.searchsorted`, the file is one plain numpy array (no pickle), and index order equals raw
id order, which the split uses to break timestamp ties by raw item id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from .arrays import unique
from .errors import UnknownIdError

INT64 = (-(2**63), 2**63 - 1)
#: Digits of the longest int64 (9,223,372,036,854,775,807).
INT64_DIGITS = 19
#: An integer id as text, as `str(n)` writes it: ASCII digits, a minus before any but 0, no leading zeros, at
#: most `INT64_DIGITS` digits, within `INT64`. The one rule by which an id is an integer: for an id a client
#: sends (`integer_text`) as for a column of ids in training data (`integer_ids`), so that an id the server
#: reads as the integer 31 is one that training read as 31, not as the text "31".
#: Python's `int()` also reads "１" (full-width), "٣١" (Arabic-Indic) and " 31 ", which would alias other ids.
INTEGER_PATTERN = rf"0|-?[1-9][0-9]{{0,{INT64_DIGITS - 1}}}"
_INT_TEXT = re.compile(INTEGER_PATTERN, re.ASCII)
#: Longest id, in characters, in training data as in requests: a user's or item's id is a key, and one id of
#: 100,000 characters would widen the fixed-width array of every id to 400 kB per id.
MAX_ID_CHARS = 256


def integer_text(text: str) -> int | None:
    """The int64 that `text` spells exactly (`INTEGER_PATTERN`, within `INT64`), else None."""
    if not _INT_TEXT.fullmatch(text):
        return None
    value = int(text)
    return value if INT64[0] <= value <= INT64[1] else None


def integer_ids(text: np.ndarray) -> np.ndarray | None:
    """`[n]` int64 of a column of ids as text (numpy unicode, as read) when every one spells an integer by
    `integer_text`'s rule, else None (the column stays text, so "007" and "7" stay two ids).

    numpy over the ids' first `INT64_DIGITS + 1` code points (~100 bytes of temporaries per id); Python only
    for ids of `INT64_DIGITS` digits, whose range the pattern cannot check."""
    n = len(text)
    width = text.dtype.itemsize // 4
    if n == 0 or not 1 <= width <= INT64_DIGITS + 1:  # a longer id is no int64; the empty one is no integer
        return np.zeros(0, np.int64) if n == 0 else None
    codes = np.ascontiguousarray(text).view(np.uint32).reshape(n, width)
    pad = codes == 0  # numpy pads short strings with NULs, and drops trailing ones: a NUL inside stays
    negative = codes[:, 0] == ord("-")
    digit = (codes - np.uint32(ord("0"))) <= 9
    length = width - pad.sum(axis=1)
    digits = length - negative
    if not (np.all(digit[:, 1:] | pad[:, 1:]) and np.all(digit[:, 0] | negative)
            and np.all(pad[:, :-1] <= pad[:, 1:]) and 1 <= digits.min() and digits.max() <= INT64_DIGITS):
        return None
    first = codes[np.arange(n), negative.astype(np.intp)]
    if np.any((first == ord("0")) & ((digits > 1) | negative)):  # "007", "-0": not how str(n) writes any n
        return None
    longest = text[digits == INT64_DIGITS]
    if any(integer_text(t) is None for t in longest.tolist()):
        return None
    return text.astype(np.int64)


@dataclass(frozen=True)
class Vocabulary:
    """Sorted distinct raw ids. `ids[index]` is the raw id of an index."""

    ids: np.ndarray

    def __post_init__(self):
        if self.ids.dtype.kind not in "iU":
            raise TypeError(f"vocabulary ids must be int64 or unicode, not {self.ids.dtype}")

    @classmethod
    def fit(cls, raw: np.ndarray) -> "Vocabulary":
        return cls(unique(raw))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_integer(self) -> bool:
        return self.ids.dtype.kind == "i"

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """Indices `[n]` int64 of raw ids of the vocabulary's own dtype; every id must be known."""
        index = self.lookup_array(raw)
        unknown = index < 0
        if unknown.any():
            raise UnknownIdError("", raw[unknown])
        return index

    def lookup_array(self, raw: np.ndarray) -> np.ndarray:
        """Indices `[n]` int64, -1 where an id is unknown; `raw` has the vocabulary's dtype."""
        if len(self.ids) == 0 or len(raw) == 0:
            return np.full(len(raw), -1, dtype=np.int64)
        pos = np.searchsorted(self.ids, raw)
        clipped = np.minimum(pos, len(self.ids) - 1)
        return np.where(self.ids[clipped] == raw, clipped, -1).astype(np.int64)

    def lookup(self, values: Iterable) -> np.ndarray:
        """Indices `[n]` int64 (-1 = unknown) for ids as a client sends them: `31` and `"31"` are the same
        id in an integer vocabulary, and integers are matched by their text in a string vocabulary.

        Anything else is unknown, never an error and never another id: integers past int64, text that is
        not exactly an ASCII integer (`"31 "`, `"--1"`, `"３１"`), and text longer than the longest id (so one
        huge id cannot widen the fixed-width array of all of them).
        """
        values = list(values)
        if self.is_integer:
            coerced = np.zeros(len(values), dtype=np.int64)
            valid = np.zeros(len(values), dtype=bool)
            for n, v in enumerate(values):
                number = v if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) else \
                    integer_text(v) if isinstance(v, str) else None
                if number is not None and INT64[0] <= int(number) <= INT64[1]:
                    coerced[n], valid[n] = int(number), True
            index = self.lookup_array(coerced)
            index[~valid] = -1
            return index
        longest = int(self.ids.dtype.itemsize // 4)
        text = [v if isinstance(v, str) else str(v) if isinstance(v, (int, np.integer)) and not isinstance(
            v, (bool, np.bool_)) else None for v in values]
        # numpy drops trailing NULs ("a\0" would read "a"); the empty id, which no vocabulary holds, is "unknown"
        return self.lookup_array(np.array([t if t is not None and len(t) <= longest and "\0" not in t else ""
                                           for t in text], dtype=self.ids.dtype))

    def decode(self, index: np.ndarray) -> list:
        """Raw ids as Python values (int or str) for indices `[n]`, ready for JSON."""
        return self.ids[index].tolist()
