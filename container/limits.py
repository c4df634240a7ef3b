"""What a request may ask of this server: `Costs` measured on the model at load, and the `Limits` they set.

Before any work, `Limits.check` estimates what a request will cost and refuses (413, saying the limit and how
much fits) one that would take more than its share of the timeout, or whose answer would not fit a real-time
response: refused up front rather than killed midway.
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from ncf.recommender import Recommender

from . import codecs
from .answers import answer_chunks, echo_bytes
from .errors import TooLarge
from .requests import MAX_EXCLUDE, MAX_FOLD_IN, MAX_K, Options, Recommend, ScorePairs, Similar, entries, parse, requests
from .serve_config import WORK_SHARE, ServeConfig

#: The smallest record that costs a whole top-k: the worst case per byte of a batch payload.
SMALLEST_RECORD = b'{"user":1}\n'
#: The smallest fold-in record: one item, and the fold-in's fixed cost (its steps) whatever the count.
SMALLEST_FOLD_IN = b'{"items":[1]}\n'
MB = 1024 * 1024


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
    items in (plus `fold_in_user_s` when it names a user), plus `exclude_s` per excluded id; `similar_s + entry_s * k` for a similar-items record,
    `pair_s` per scored pair.
    Every recommend record is costed as a known user (an unknown one gets the cheaper popular items), and
    every fold-in that names a user as the known user with the most history (the fold-in's prior), giving only
    known items, each counted even when repeated: the estimate errs high.

    A fold-in is timed whole (parse, `Recommender.recommend_from_items`, encode), after a warm-up, at 1 item,
    32 and the most a request may give (`MAX_FOLD_IN`, or every item), as a fixed cost (1 item: `fold_in_s`
    anonymous, `fold_in_user_s` more for the user) and the steepest per-item slope of the two larger sizes,
    never below the 1-item cost / `MAX_FOLD_IN` (so the largest fold-in is costed at twice the smallest at
    least): its cost per item comes from the fold-in's own
    code as it is today, not from constants. Timed once, cold, at 1 and 32 items, the slope had come out
    negative and was clamped to 0: 1,000-item fold-ins were estimated 8.5x too cheap and a request the
    estimate admitted had its worker killed at the timeout. Bytes: `record_bytes` per response (its frame, the longest user id) plus
    `entry_bytes` per entry (the longest item id, the longest float), plus what the answer echoes from the
    request (`echo_bytes`).

    On ml-25m-sized models (59,000 items, factors 128, layers (128, 64, 32)), one core of a 2-core VM shared
    with other jobs: `user_s` 1.0-3.4 ms for MF, 8.5-37 ms for NeuMF (the VM's load moves it 4x), `entry_s`
    1.3-5 us; measuring takes ~0.25 s for NeuMF (16 users, 16 items, 1,024 pairs), plus the fold-ins': a
    1,000-item fold-in of an ml-25m-sized NeuMF is 0.17-0.28 s, timed once (the smaller sizes three times).
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

    @classmethod
    def measure(cls, recommender: Recommender, sample: int = 16) -> "Costs":
        """Times the path a request takes (decode, parse, answer, encode) on `sample` users and items."""
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
            for chunk in answer_chunks(recommender, records, options):
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
        return cls(line_s=line_s, user_s=user_s, similar_s=similar_s, entry_s=entry_s, pair_s=pair_s,
                   n_items=n_items, fold_in_s=fold_in_s, fold_in_item_s=fold_in_item_s, exclude_s=exclude_s,
                   fold_in_user_s=fold_in_user_s,
                   record_bytes=len('{"user": , "itemList": [], "fallback": false}\n')
                   + _longest_json(recommender.users),
                   entry_bytes=max(len('{"itemId": , "score": }, ') + _longest_json(recommender.items),
                                   len('{"score": , "like": false}, ')) + 24)

    def seconds(self, request) -> float:
        if isinstance(request, Recommend):
            work = (self.user_s if request.items is None else self.fold_in_s + self.fold_in_item_s * len(request.items)
                    + (self.fold_in_user_s if request.user is not None else 0.0))
            return (self.line_s + work + self.exclude_s * len(request.exclude)
                    + self.entry_s * min(request.k, self.n_items))
        if isinstance(request, Similar):
            return self.line_s + self.similar_s + self.entry_s * min(request.k, self.n_items)
        if isinstance(request, ScorePairs):
            return self.line_s + self.pair_s * request.answers
        return self.line_s

    def answer_bytes(self, request) -> int:
        """Bytes of a request's answer but its `echo_bytes`."""
        return self.record_bytes + self.entry_bytes * entries(request, self.n_items)

    @property
    def worst_per_byte(self) -> tuple[float, bytes]:
        """The most estimated work per byte of payload and the record that does it, all asking for `MAX_K`
        items: `SMALLEST_RECORD`, `SMALLEST_FOLD_IN` (a fold-in of one item), or the largest fold-in and
        exclusion lists in the fewest bytes (one-digit ids, repeated). The estimate is linear in the lists'
        lengths, so the worst per byte is at one end of each."""
        options = Options(k=MAX_K)
        return max((self.seconds(parse(json.loads(line), options)) / len(line), line) for line in WORST_LINES)


#: The least a request's id costs, parsed and looked up: the floor of `Costs.exclude_s`.
MIN_ID_S = 1e-7
#: The records whose estimated work per byte may be the most (`Costs.worst_per_byte`).
WORST_LINES = (SMALLEST_RECORD, SMALLEST_FOLD_IN,
               b'{"items":[' + b",".join([b"1"] * MAX_FOLD_IN) + b']}\n',
               b'{"user":1,"exclude":[' + b",".join([b"1"] * MAX_EXCLUDE) + b']}\n')


@dataclass(frozen=True)
class Limits:
    """What one request may ask of this server, from the model's `Costs` and the `ServeConfig`.

    Attributes:
        budget_s: the most estimated work a request may take (`ServeConfig.work_budget_s`), a share of
            `deadline_s`, the seconds a request may last.
        answer_bytes: the largest answer (real time: 6 MB), or None (batch: answers stream to S3).
        payload_mb: the `MaxPayloadInMB` to advertise. Batch mode: the most MB of the costliest lines per byte
            (`Costs.worst_per_byte`: `WORST_LINES`) at `MAX_K`
            that fit the budget, at least 1 (the API's smallest), at most the body limit and 100 /
            MaxConcurrentTransforms (the API's rule for their product). Real time: the body limit (only a
            batch transform reads it).
        fits: whether a batch payload of that size fits the budget (False only when even 1 MB does not).
    """

    costs: Costs
    budget_s: float
    deadline_s: int
    answer_bytes: int | None
    payload_mb: int
    fits: bool

    @classmethod
    def derive(cls, costs: Costs, config: ServeConfig) -> "Limits":
        per_mb = MB * costs.worst_per_byte[0]
        fit = int(config.work_budget_s // per_mb) if per_mb > 0 else config.max_payload_mb
        payload = max(1, min(fit, config.max_payload_mb, 100 // config.max_concurrent_transforms))
        return cls(costs=costs, budget_s=config.work_budget_s, deadline_s=config.deadline_s,
                   answer_bytes=config.max_answer_bytes,
                   payload_mb=payload if config.batch else config.max_payload_mb,
                   fits=payload * per_mb <= config.work_budget_s)

    def describe(self) -> str:
        """One log line: the budget, the measured costs and, in batch mode, the advertised payload."""
        text = (f"a request may take {self.budget_s:g} s of estimated work (of the {self.deadline_s} s it may "
                f"last); a known user costs {self.costs.user_s * 1e3:.2f} ms + {self.costs.entry_s * 1e6:.2f} us "
                f"per item returned")
        if self.answer_bytes is not None:
            return f"{text}; answers up to {self.answer_bytes / MB:g} MB"
        per_byte, record = self.costs.worst_per_byte
        worst = MB // len(record) * self.payload_mb
        return (f"{text}; MaxPayloadInMB {self.payload_mb}: {worst:,} records of {record!r} at "
                f"k={MAX_K} would take about {worst * len(record) * per_byte:.0f} s")

    def check(self, records, options: Options) -> None:
        """Raises `TooLarge` if answering `records` would take more than `budget_s` or make an answer larger
        than `answer_bytes`. Stops reading at the first record over a limit, so a huge body is refused fast."""
        seconds, size, echoed, fitted = 0.0, 0, 0, 0
        total = len(records)
        for request in requests(records, options):
            seconds += self.costs.seconds(request)
            if seconds > self.budget_s:
                raise self._too_slow(request, fitted, total)
            if self.answer_bytes is not None:  # batch answers have no limit: their echo is not counted
                echoed += echo_bytes(request)
                size += self.costs.answer_bytes(request)
                if size + echoed > self.answer_bytes:
                    if fitted == 0 and isinstance(request, ScorePairs):  # one body of pairs or CSV rows
                        raise self._too_many_rows(request, size + echoed)
                    raise self._too_big(total, echoed * total // (fitted + 1))
            fitted += 1

    def _too_slow(self, request, fitted: int, total: int) -> TooLarge:
        limit = (f"the {self.budget_s:g} s of work one request may take ({WORK_SHARE:.0%} of the {self.deadline_s} s "
                 f"it may last, so that none is cut off midway)")
        if fitted == 0 and isinstance(request, ScorePairs) and self.costs.pair_s > 0:
            pairs = int(self.budget_s / self.costs.pair_s)
            what = "rows" if request.csv is not None else "pairs"
            return TooLarge(f"{request.answers:,} {what} would take more than {limit}: send at most "
                            f"{pairs:,} {what} per request", limit_s=self.budget_s, max_pairs=pairs)
        return TooLarge(f"{total:,} records would take more than {limit}: the first {fitted:,} fit; send at "
                        f"most {fitted:,} records like these per request", limit_s=self.budget_s,
                        max_records=fitted)

    def _too_many_rows(self, request: "ScorePairs", size: int) -> TooLarge:
        """One request of pairs or CSV rows whose answer, of `size` bytes, would pass the real-time limit: how
        many rows fit, at the bytes a row of this request costs."""
        what = "rows" if request.csv is not None else "pairs"
        most = int(self.answer_bytes * request.answers // max(size, 1))
        return TooLarge(f"{request.answers:,} {what} would make an answer larger than the "
                        f"{self.answer_bytes / MB:g} MB a real-time response may carry: send at most {most:,} {what} "
                        f"like these per request, or use a batch transform", limit_bytes=self.answer_bytes,
                        max_pairs=most)

    def _too_big(self, total: int, echoed: int) -> TooLarge:
        """`echoed`: the bytes the whole request's answer would repeat from it (`echo_bytes`), estimated from
        the records read so far."""
        room = max(self.answer_bytes - total * self.costs.record_bytes - echoed, 0)
        most = room // self.costs.entry_bytes
        echo = (f", about {echoed:,} bytes of it repeating what the request sent (ids, fold-in items, error "
                f"messages, as JSON writes them: 6 bytes for an 'é', 12 for an emoji)"
                if echoed * 10 >= self.answer_bytes else "")
        return TooLarge(f"the answer would be larger than the {self.answer_bytes / MB:g} MB a real-time response "
                        f"may carry{echo}: ask for at most {most:,} entries (the sum of k over recommend and "
                        f"similar-item records, plus pairs scored) in a request of {total:,} records, or use a "
                        f"batch transform", limit_bytes=self.answer_bytes, max_entries=most)
