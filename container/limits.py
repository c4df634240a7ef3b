"""What a request may ask of this server: the `Limits` that the model's measured `costs.Costs` set.

Before any work, `Limits.check` estimates what a request will cost and refuses (413, saying the limit and how
much fits) one that would take more than its share of the timeout, or whose answer would not fit a real-time
response: refused up front rather than killed midway.
"""

from __future__ import annotations

from dataclasses import dataclass

from .answers import echo_bytes, rule_verdict
from .costs import Costs
from .errors import TooLarge
from .requests import MAX_K, Options, ScorePairs, requests
from .rules import NO_RULES, RuleBook
from .serve_config import WORK_SHARE, ServeConfig

MB = 1024 * 1024


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

    def check(self, records, options: Options, book: RuleBook | None = None) -> None:
        """Raises `TooLarge` if answering `records` would take more than `budget_s` or make an answer larger
        than `answer_bytes`. Stops reading at the first record over a limit, so a huge body is refused fast.

        `book`: the model's rules. In real time, each distinct set of rules is then compiled here, once, after
        its cost has been counted (`book`'s cache keeps it for the answer, so the work is not done twice), and
        its records' answers counted with the error they will carry, or none: 10,000 records sharing one
        valid filter repeat nothing. Without a book, or past what the cache holds, a record's rules are counted
        as failing with the longest message they could."""
        seconds, size, echoed, fitted = 0.0, 0, 0, 0
        total = len(records)
        compiled: set = set()
        verdicts: dict = {}
        room = book.cache.size if book is not None else 0  # filters compiled here that the answer finds cached
        for request in requests(records, options):
            seconds += self.costs.seconds(request, compiled)
            if seconds > self.budget_s:
                raise self._too_slow(request, fitted, total)
            if self.answer_bytes is not None:  # batch answers have no limit: their echo is not counted
                verdict = None
                rules = getattr(request, "rules", NO_RULES)
                if rules is not NO_RULES:
                    key = (type(request), rules, getattr(request, "exclude_seen", None),
                           getattr(request, "exclude_seen_given", None))
                    verdict = verdicts.get(key)
                    if verdict is None and book is not None and len(rules.filters()) <= room:
                        room -= len(rules.filters())
                        verdict = verdicts[key] = rule_verdict(book, request)
                echoed += echo_bytes(request, self.costs.rule_error_bytes, verdict)
                size += self.costs.answer_bytes(request)
                if size + echoed > self.answer_bytes:
                    if fitted == 0 and isinstance(request, ScorePairs):  # one body of pairs or CSV rows
                        raise self._too_many_rows(request, size + echoed)
                    raise self._too_big(total, echoed * total // (fitted + 1), fitted)
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

    def _too_big(self, total: int, echoed: int, fitted: int) -> TooLarge:
        """`echoed`: the bytes the whole request's answer would repeat from it (`echo_bytes`), estimated from
        the records read so far; `fitted`: the records that fit before the one that did not. Advice that can be
        followed: fewer entries while some would fit, else fewer records (never "at most 0 entries")."""
        room = max(self.answer_bytes - total * self.costs.record_bytes - echoed, 0)
        most = room // self.costs.entry_bytes
        limit = f"the {self.answer_bytes / MB:g} MB a real-time response may carry"
        echo = (f", about {echoed:,} bytes of it repeating what the request sent (ids, fold-in items, error "
                f"messages, as JSON writes them: 6 bytes for an 'é', 12 for an emoji)"
                if echoed * 10 >= self.answer_bytes else "")
        if most > 0:
            return TooLarge(f"the answer would be larger than {limit}{echo}: ask for at most {most:,} entries (the "
                            f"sum of k over recommend and similar-item records, items ranked, plus pairs scored) in "
                            f"a request of {total:,} records, or use a batch transform", limit_bytes=self.answer_bytes,
                            max_entries=most)
        if fitted == 0:
            return TooLarge(f"the first record's answer alone would be larger than {limit}{echo}: use a batch "
                            f"transform", limit_bytes=self.answer_bytes)
        return TooLarge(f"the answer would be larger than {limit}{echo}, even with no entries: what {total:,} "
                        f"records repeat fills it; send at most {fitted:,} records like these per request, or use a "
                        f"batch transform", limit_bytes=self.answer_bytes, max_records=fitted)
