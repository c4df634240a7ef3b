"""Which column of an interactions file holds the user, the item, the rating and the time.

A column is found by the name the job configured (`Columns`), else by a name MovieLens and common exports
use (`KNOWN_NAMES`), compared case-insensitively; a file without a header is read by position instead
(user, item[, rating[, timestamp]]). Both readers (`arrowread`, `pandasread`) and the items table's reader
follow these names, so a file means the same to each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataError

ROLES = ("user", "item", "rating", "timestamp")

#: Column names recognised without configuration, compared case-insensitively.
KNOWN_NAMES = {
    "user": ("userId", "user_id", "user", "uid", "customer_id", "visitor_id"),
    "item": ("movieId", "movie_id", "itemId", "item_id", "item", "iid", "product_id"),
    "rating": ("rating", "score", "event_value"),
    "timestamp": ("timestamp", "time", "ts", "event_time", "unix_timestamp"),
}


@dataclass(frozen=True)
class Columns:
    """Which column holds what; `None` means "find it by a known name (or by position without a header)".

    `rating` and `timestamp` are optional in the data; when named here they must be present.
    """

    user: str | None = None
    item: str | None = None
    rating: str | None = None
    timestamp: str | None = None

    def configured(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}


def pick_roles(names: list, path: Path, columns: Columns) -> dict[str, int]:
    """{role: index into `names`} by the configured names, else the known ones, compared case-insensitively."""
    by_lower = {str(c).strip().lower(): i for i, c in enumerate(names)}
    picked: dict[str, int] = {}
    for role in ROLES:
        wanted = getattr(columns, role)
        if wanted is not None:
            if wanted.lower() not in by_lower:
                raise DataError(
                    f"{path}: missing {role} column {wanted!r}; the file has columns {list(map(str, names))}"
                )
            picked[role] = by_lower[wanted.lower()]
            continue
        found = [by_lower[n.lower()] for n in KNOWN_NAMES[role] if n.lower() in by_lower]
        if found:
            picked[role] = found[0]
        elif role in ("user", "item"):
            raise DataError(
                f"{path}: no {role} column: the file has columns {list(map(str, names))}; "
                f"name it one of {list(KNOWN_NAMES[role])} or configure the {role} column's name"
            )
    return picked
