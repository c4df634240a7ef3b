"""A shop's item metadata for the session's model (`conftest.shop_dir`), and the truths tests check answers
against: which items a condition lets through, read from the same columns the model folder holds."""

from __future__ import annotations

#: The shop's genres: an item has one, every third a second one (Personalize's `|` between values).
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance")


def shop_columns(n_items: int) -> dict[str, list[str]]:
    """Item metadata by model item index: GENRES (multi-valued), PRICE (missing on every 7th item), IN_STOCK
    (a boolean) and TITLE (free text, with a character JSON escapes)."""
    return {
        "GENRES": [GENRES[i % 5] + (f"|{GENRES[(i // 5) % 5]}" if i % 3 == 0 and (i // 5) % 5 != i % 5 else "")
                   for i in range(n_items)],
        "PRICE": ["" if i % 7 == 0 else f"{(i * 37) % 100 + 0.5}" for i in range(n_items)],
        "IN_STOCK": ["false" if i % 4 == 0 else "true" for i in range(n_items)],
        "TITLE": [f"Caf\u00e9 {i}" for i in range(n_items)],
    }


class Catalogue:
    """The shop's items by id (as answers give them, strings): each one's genres, price (None when missing),
    stock and title."""

    def __init__(self, recommender):
        ids = [str(i) for i in recommender.items.decode(range(len(recommender.items)))]
        columns = shop_columns(len(ids))
        self.ids = ids
        self.genres = {i: set(g.split("|")) for i, g in zip(ids, columns["GENRES"])}
        self.price = {i: float(p) if p else None for i, p in zip(ids, columns["PRICE"])}
        self.in_stock = {i: s == "true" for i, s in zip(ids, columns["IN_STOCK"])}
        self.title = dict(zip(ids, columns["TITLE"]))
