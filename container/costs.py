"""What answering costs on this model and machine: `Costs`, measured once at load through the path a
request takes, from which `limits.Limits` estimates every request before any work is done.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ncf.recommender import Recommender

from . import codecs
from .answers import answer_chunks
from .requests import (MAX_EXCLUDE, MAX_FOLD_IN, MAX_INPUT_LIST, MAX_K, Options, Rank, Recommend, ScorePairs, Similar,
                       entries, parse, requests)
from .rule_costs import conditions, measure_rules, rule_lines
from .rules import RuleBook, Rules

#: The smallest record that costs a whole top-k: the worst case per byte of a batch payload.
SMALLEST_RECORD = b'{"user":1}\n'
#: The smallest fold-in record: one item, and the fold-in's fixed cost (its steps) whatever the count.
SMALLEST_FOLD_IN = b'{"items":[1]}\n'
#: Bytes of an answer entry's metadata besides its columns' values: `, "metadata": {}`.
METADATA_FRAME = 16


def _longest_json(vocab) -> int:
    """Characters of the longest id of a vocabulary as JSON writes it."""
    if len(vocab) == 0:
        return 2
    if vocab.is_integer:
        return max(len(str(int(vocab.ids.min()))), len(str(int(vocab.ids.max()))))
    return max(len(json.dumps(i)) for i in vocab.ids.tolist())


def _unknown(vocab) -> Any:
    """An id that `vocab` does not hold."""
    if vocab.is_integer:
        return int(vocab.ids.max()) + 1 if len(vocab) and int(vocab.ids.max()) < 2**62 else -(2**62)
    return "~" + (max(vocab.ids.tolist(), key=len) if len(vocab) else "") + "~"


def _one_core():
    """Time as a worker runs: one BLAS thread (gunicorn.conf.py's post_fork sets the same)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1)


@dataclass(frozen=True)
class Costs:
    """What answering costs on this model and machine, measured once at load, on one core.

    A request's estimated seconds are, per record, `line_s` (parsing it: once to check, once to answer) plus
    `user_s + entry_s * min(k, n_items)` for a recommend record (score every item, mask, top-k, then build and
    encode `k` entries), or `fold_in_s + fold_in_item_s * items + entry_s * min(k, n_items)` when it folds
    items in (plus `fold_in_user_s` when it names a user), plus `exclude_s` per excluded id;
    `similar_s + entry_s * k` for a similar-items record, `pair_s` per scored pair.
    Every recommend record is costed as a known user (an unknown one gets the cheaper popular items), and
    every fold-in that names a user as the known user with the most history (the fold-in's prior), giving only
    known items, each counted even when repeated: the estimate errs high.

    A fold-in is timed whole (parse, `Recommender.recommend_from_items`, encode), after a warm-up, at 1 item,
    32 and the most a request may give (`MAX_FOLD_IN`, or every item), as a fixed cost (1 item: `fold_in_s`
    anonymous, `fold_in_user_s` more for the user) and the steepest per-item slope of the two larger sizes,
    never below the 1-item cost / `MAX_FOLD_IN` (so the largest fold-in is costed at twice the smallest at
    least): its cost per item comes from the fold-in's own
    code as it is today, not from constants. Timed once, cold, at 1 and 32 items, the slope had come out
    negative and was clamped to 0: 1,000-item fold-ins were estimated several times too cheap and a request the
    estimate admitted had its worker killed at the timeout. Bytes: `record_bytes` per response (its frame,
    the longest user id) plus `entry_bytes` per entry (the longest item id, the longest float), plus what
    the answer echoes from the request (`echo_bytes`).

    Business rules add, per record: `filter_s` per filter (the request's and each promotion's; applying a
    compiled mask) and, for an expression with values the request has not compiled yet (a compiled one is
    cached), `compile_char_s` per character, `condition_s` per condition (`rule_costs.conditions`) and
    `value_char_s` per character of its filterValues (`rule_costs` says how each is calibrated);
    `promotion_s` per promotion (its own masked top-k and slots); for `diversity`, `diversity_entry_s` per item
    when its cap cannot bind (`maxPerValue >= k`) and `diversity_all_s` when it can (the worst case: the caps
    refuse every candidate past the shortlist, so the whole catalogue is visited), once for the request's
    candidates and once for each promotion's; `column_entry_s` per metadata column per entry. A ranking costs
    `rank_s + rank_item_s` per item given. Each is timed at start through the same path, on the model's own
    metadata when it has some.
    """

    line_s: float
    user_s: float
    similar_s: float
    entry_s: float
    pair_s: float
    n_items: int
    record_bytes: int
    entry_bytes: int
    fold_in_s: float = 0.0
    fold_in_item_s: float = 0.0
    exclude_s: float = 0.0
    fold_in_user_s: float = 0.0
    filter_s: float = 0.0
    compile_char_s: float = 0.0
    condition_s: float = 0.0
    value_char_s: float = 0.0
    promotion_s: float = 0.0
    diversity_entry_s: float = 0.0
    diversity_all_s: float = 0.0
    column_entry_s: float = 0.0
    rank_s: float = 0.0
    rank_item_s: float = 0.0
    #: Per metadata column (upper case), the most bytes its value takes in an entry (`RuleBook.column_bytes`).
    column_bytes: Mapping[str, int] = field(default_factory=dict)
    #: The longest deploy-time filter's expression, in characters, and the most conditions one holds: what
    #: compiling a `filterName` costs.
    named_chars: int = 0
    named_conditions: int = 0
    #: The most bytes a rule's error quotes from the model (its columns, its filters' names).
    rule_error_bytes: int = 0
    #: Records with rules whose estimated work per byte may be the most (`worst_per_byte`), for this model.
    rule_lines: tuple[bytes, ...] = ()

    @classmethod
    def measure(cls, recommender: Recommender, sample: int = 16, book: RuleBook | None = None) -> "Costs":
        """Times the path a request takes (decode, parse, answer, encode) on `sample` users and items, with
        the model's rules `book` (the model's metadata alone, no deploy-time filters, when None)."""
        book = book or RuleBook(recommender.item_metadata, len(recommender.items))
        n_users, n_items = len(recommender.users), len(recommender.items)
        users = (recommender.users.decode(np.linspace(0, n_users - 1, min(sample, n_users)).round().astype(int))
                 if n_users else ["?"] * sample)
        items = recommender.items.decode(np.linspace(0, n_items - 1, min(sample, n_items)).round().astype(int))
        lines = codecs.decode_jsonlines("".join(json.dumps({"user": u}) + "\n" for u in users).encode())

        def whole(records: list[dict], options: Options, repeat: int = 1) -> float:
            """Median seconds to check (parse) and answer `records` sent as JSON Lines, over `repeat` runs."""
            body = "".join(json.dumps(r) + "\n" for r in records).encode()
            runs = []
            for _ in range(repeat):
                start = time.perf_counter()
                lines = codecs.decode_jsonlines(body)
                for _ in requests(lines, options):  # `Limits.check`'s pass
                    pass
                timed(lines, options)
                runs.append(time.perf_counter() - start)
            return float(np.median(runs))

        def timed(records, options: Options) -> tuple[float, int]:
            """Seconds to answer and encode `records`, and the entries made."""
            start = time.perf_counter()
            made = 0
            for chunk in answer_chunks(recommender, records, options, book):
                "".join(codecs.ENCODERS[codecs.JSONLINES]([chunk], len(chunk)))
                made += sum(len(r.get("itemList", r.get("outputs", {}).get("score", ()))) for r in chunk)
            return time.perf_counter() - start, made

        with _one_core():
            timed(list(lines)[:2], Options(k=MAX_K))  # first calls: allocations, caches
            start = time.perf_counter()
            for _ in requests(lines, Options()):
                pass
            line_s = (time.perf_counter() - start) / len(users)
            # Per entry, on unknown users (popular items, no scoring), so that no scoring noise is in it.
            strangers = [{"user": _unknown(recommender.users)}] * len(users)
            few, few_entries = timed(strangers, Options(k=1))
            many, many_entries = timed(strangers, Options(k=MAX_K))
            entry_s = max(many - few, 0.0) / max(many_entries - few_entries, 1)
            seconds, made = timed(lines, Options(k=1))
            user_s = max(seconds - entry_s * made, 0.0) / len(users)
            similar_s = 0.0
            if items:
                seconds, made = timed([{"item": i} for i in items], Options(k=1))
                similar_s = max(seconds - entry_s * made, 0.0) / len(items)
            fold_in_s = fold_in_user_s = fold_in_item_s = exclude_s = 0.0
            if n_items:
                # The known user with the most history (the fold-in's prior costs most), or anonymous.
                who = ({"user": recommender.users.decode([int(np.argmax(recommender.artifact.seen.counts()))])[0]}
                       if n_users else {})
                ids = recommender.items.decode(np.arange(min(MAX_FOLD_IN, n_items)))
                sizes = sorted({1, min(32, len(ids)), len(ids)})
                fold = {n: [{**who, "items": ids[:n], "k": 1}] for n in sizes}
                for n in sizes[:2]:  # warm-up: first calls allocate, fill caches
                    whole(fold[n], Options())
                took = {n: whole(fold[n], Options(), repeat=1 if n == sizes[-1] and n > 32 else 3) for n in sizes}
                fold_in_s = whole([{"items": ids[:1], "k": 1}], Options(), repeat=3)  # anonymous: no prior
                fold_in_user_s = max(took[1] - fold_in_s, 0.0)
                slopes = [(took[n] - took[1]) / (n - 1) for n in sizes[1:]]
                fold_in_item_s = max([*slopes, took[1] / MAX_FOLD_IN])
                excluded = recommender.items.decode(np.arange(MAX_EXCLUDE) % n_items)
                plain = whole([{**who, "k": 1}], Options(), repeat=3)
                exclude_s = max(whole([{**who, "k": 1, "exclude": excluded}], Options(), repeat=3) - plain,
                                0.0) / MAX_EXCLUDE
                exclude_s = max(exclude_s, MIN_ID_S)
            pair_s = 0.0
            if n_users and n_items:  # as CSV sends them: ids as text, the slower lookup
                csv = "".join(f"{u},{i}\n" for u, i in zip(users * 64, items * 1024)).encode()
                start = time.perf_counter()
                _, made = timed(codecs.decode_csv(csv), Options())
                pair_s = (time.perf_counter() - start) / max(made, 1)
            rules = measure_rules(recommender, book, users, whole) if n_users and n_items else {}
        frame = max(len('{"user": , "itemList": [], "fallback": false}\n'), len(
            '{"user": , "personalizedRanking": [], "unknown": [], "filtered": 1234567, "fallback": false}\n'))
        return cls(line_s=line_s, user_s=user_s, similar_s=similar_s, entry_s=entry_s, pair_s=pair_s,
                   n_items=n_items, fold_in_s=fold_in_s, fold_in_item_s=fold_in_item_s, exclude_s=exclude_s,
                   fold_in_user_s=fold_in_user_s, **rules,
                   record_bytes=frame + _longest_json(recommender.users),
                   entry_bytes=max(len('{"itemId": "", "score": }, ') + _longest_json(recommender.items),
                                   len('{"score": , "like": false}, ')) + 24,
                   column_bytes={n.upper(): book.column_bytes(n) for n in
                                 (book.metadata.names if book.metadata is not None else [])},
                   named_chars=max(map(len, book.named.values()), default=0),
                   named_conditions=max(map(conditions, book.named.values()), default=0),
                   rule_error_bytes=len(json.dumps(book.metadata.names if book.metadata is not None else []))
                   + len(json.dumps(sorted(book.named))),
                   rule_lines=rule_lines(book))

    def seconds(self, request, compiled: set | None = None) -> float:
        """Estimated seconds of `request`; `compiled`: the filters earlier records of the same request compile
        (each is compiled once, then cached), updated; None counts every compile."""
        if isinstance(request, Recommend):
            work = (self.user_s if request.items is None else self.fold_in_s + self.fold_in_item_s * len(request.items)
                    + (self.fold_in_user_s if request.user is not None else 0.0))
            return (self.line_s + work + self.exclude_s * len(request.exclude)
                    + self.entry_s * min(request.k, self.n_items) + self._rules_s(request.rules, request.k, compiled))
        if isinstance(request, Similar):
            return (self.line_s + self.similar_s + self.entry_s * min(request.k, self.n_items)
                    + self._rules_s(request.rules, request.k, compiled))
        if isinstance(request, Rank):
            return (self.line_s + self.rank_s + (self.rank_item_s + self.entry_s) * len(request.items)
                    + self._rules_s(request.rules, len(request.items), compiled))
        if isinstance(request, ScorePairs):
            return self.line_s + self.pair_s * request.answers
        return self.line_s

    def _rules_s(self, rules: Rules, k: int, compiled: set | None) -> float:
        seconds = 0.0
        for spec in rules.filters():
            seconds += self.filter_s
            key = (spec.expression, spec.name, spec.values)
            if compiled is None or key not in compiled:
                if spec.expression is not None:
                    seconds += (self.compile_char_s * len(spec.expression)
                                + self.condition_s * conditions(spec.expression))
                else:
                    seconds += self.compile_char_s * self.named_chars + self.condition_s * self.named_conditions
                seconds += self.value_char_s * sum(len(n) + len(v) for n, v in spec.values or ())
                if compiled is not None:
                    compiled.add(key)
        seconds += self.promotion_s * len(rules.promotions)
        if rules.diversity is not None:  # the cap applies to each pool: the request's and each promotion's
            pools = 1 + len(rules.promotions)
            seconds += pools * (self.diversity_entry_s * min(k, self.n_items) if rules.diversity.max_per_value >= k
                                else self.diversity_all_s)
        return seconds + self.column_entry_s * len(rules.columns) * min(k, self.n_items)

    def answer_bytes(self, request) -> int:
        """Bytes of a request's answer but its `echo_bytes`."""
        per_entry = self.entry_bytes
        rules = getattr(request, "rules", None)
        if rules is not None and rules.columns:
            per_entry += METADATA_FRAME + sum(self.column_bytes.get(c.upper(), 0) for c in rules.columns)
        return self.record_bytes + per_entry * entries(request, self.n_items)

    @property
    def worst_per_byte(self) -> tuple[float, bytes]:
        """The most estimated work per byte of payload and the record that does it, all asking for `MAX_K`
        items: `SMALLEST_RECORD`, `SMALLEST_FOLD_IN` (a fold-in of one item), or the largest fold-in and
        exclusion lists in the fewest bytes (one-digit ids, repeated), and this model's `rule_lines`. The
        estimate is linear in the lists' lengths, so the worst per byte is at one end of each."""
        options = Options(k=MAX_K)
        return max((self.seconds(parse(json.loads(line), options)) / len(line), line)
                   for line in WORST_LINES + self.rule_lines)


#: The least a request's id costs, parsed and looked up: the floor of `Costs.exclude_s`.
MIN_ID_S = 1e-7
#: The records whose estimated work per byte may be the most (`Costs.worst_per_byte`).
WORST_LINES = (SMALLEST_RECORD, SMALLEST_FOLD_IN,
               b'{"items":[' + b",".join([b"1"] * MAX_FOLD_IN) + b']}\n',
               b'{"user":1,"exclude":[' + b",".join([b"1"] * MAX_EXCLUDE) + b']}\n')
