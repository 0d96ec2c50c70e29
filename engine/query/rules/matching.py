"""Which rules a query fires, at a cost that does not grow with the number of rules.

Exact patterns sit in a dict keyed by the normalised query; `contains` patterns in a dict keyed by their
word run, so a query looks up each run of up to MAX_CONTAINS_WORDS consecutive words it holds (a query of
w words: at most 8w lookups, whatever the number of rules); `any` rules always fire. A rule fires when its
pattern matches the query as typed or the query as corrected for typos (`Hits.corrected_query`).
"""

from __future__ import annotations

from collections.abc import Iterable

from vitrina.engine.query.rules.model import MAX_CONTAINS_WORDS, Rule, RuleSet, normalise_query


class PatternIndex:
    """The rules of a RuleSet indexed by pattern; `matching` gives those a query fires, in file order."""

    def __init__(self, rules: RuleSet) -> None:
        self.rules = rules.rules
        self.exact: dict[str, list[int]] = {}
        self.contains: dict[str, list[int]] = {}
        self.every: list[int] = []
        self.longest = 0  # words in the longest `contains` pattern
        for i, rule in enumerate(self.rules):
            if rule.kind == "exact":
                self.exact.setdefault(rule.pattern, []).append(i)
            elif rule.kind == "contains":
                self.contains.setdefault(rule.pattern, []).append(i)
                self.longest = max(self.longest, len(rule.pattern.split()))
            else:
                self.every.append(i)

    def matching(self, *queries: str | None) -> list[Rule]:
        """The rules any of `queries` fires (None skipped), each once, in file order."""
        fired: set[int] = set(self.every)
        for query in dict.fromkeys(q for q in queries if q):
            text = normalise_query(query)
            fired.update(self.exact.get(text, ()))
            if self.contains:
                for run in word_runs(text.split(), min(self.longest, MAX_CONTAINS_WORDS)):
                    fired.update(self.contains.get(run, ()))
        return [self.rules[i] for i in sorted(fired)]


def word_runs(words: list[str], longest: int) -> Iterable[str]:
    """Every run of 1 to `longest` consecutive words, joined by single spaces."""
    for start in range(len(words)):
        for end in range(start + 1, min(start + longest, len(words)) + 1):
            yield " ".join(words[start:end])
