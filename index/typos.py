"""Typo tolerance for the lexical leg: the catalog's vocabulary, and query words corrected to it.

At index time every alphabetic word of the catalog text (folded, before stemming and stopwords) is
counted; the counts are stored beside the BM25 files (`vocabulary.json`). At query time a word is
corrected only when all of these hold:

- it is made of letters only (numbers, units and SKU-like tokens such as `rg6` or `x100` are never touched),
- it has at least 4 letters, and is not a stopword or a unit spelling,
- neither the word nor its stem is in the catalog (as a word, or as a BM25 token).

It is then looked up with SymSpell (symspellpy) in the catalog vocabulary within an edit distance
(Damerau, optimal string alignment) that grows with its length: 1 for 4-7 letters, 2 from 8. The
closest catalog word wins, the most frequent among equally close ones. Its BM25 tokens are scored
with a weight below 1 (FUZZY_WEIGHT), so a product matching the corrected word ranks below one
matching an exact query word equally well.

An index without a vocabulary file (built before this existed) searches as before: no correction.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

VOCABULARY_FILE = "vocabulary.json"
VOCABULARY_FORMAT = "vitrina-vocabulary-1"
FUZZY_WEIGHT = 0.8  # the BM25 weight of a corrected word's tokens (exact query words weigh 1)
MIN_LENGTH = 4  # shorter words are never corrected
_WORD = re.compile(r"[^\W\d_]+")  # letters only
_ANY_WORD = re.compile(r"[^\W_]+")  # letters and digits: a token mixing them is SKU-like


def max_distance(word: str) -> int:
    """The edit distance allowed for a query word of this length: 0 below 4 letters, 1 for 4-7, 2 from 8."""
    n = len(word)
    return 0 if n < MIN_LENGTH else 1 if n < 8 else 2


def is_fuzzable(token: str) -> bool:
    """Letters only (no digit anywhere), at least MIN_LENGTH long."""
    return len(token) >= MIN_LENGTH and _WORD.fullmatch(token) is not None


@dataclass(frozen=True)
class Correction:
    """A query changed to catalog words: its new text and each (typed, corrected) word."""

    text: str
    fixes: tuple[tuple[str, str], ...]


class Vocabulary:
    """The catalog's folded words and how often each occurs; corrects query words to them (SymSpell)."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts
        self._symspell = None
        self._by_frequency: list[str] | None = None  # every word, most frequent first, built on first use

    @classmethod
    def build(cls, folded_texts: Iterable[str]) -> "Vocabulary":
        counts: Counter[str] = Counter()
        for text in folded_texts:
            counts.update(w for w in _WORD.findall(text) if len(w) > 1)
        return cls(dict(sorted(counts.items())))

    def __contains__(self, word: str) -> bool:
        return word in self.counts

    def __len__(self) -> int:
        return len(self.counts)

    def save(self, directory: Path) -> None:
        (directory / VOCABULARY_FILE).write_text(
            json.dumps({"format": VOCABULARY_FORMAT, "counts": self.counts}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "Vocabulary | None":
        """The stored vocabulary, or None where the index has none (older indexes) or another format."""
        path = directory / VOCABULARY_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("format") != VOCABULARY_FORMAT or not isinstance(data.get("counts"), dict):
            return None
        return cls({str(w): int(c) for w, c in data["counts"].items()})

    @property
    def symspell(self):
        """The SymSpell lookup over the vocabulary, built on first use (a typo-free query never pays for it)."""
        if self._symspell is None:
            from symspellpy import SymSpell

            symspell = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
            for word, count in self.counts.items():
                symspell.create_dictionary_entry(word, count)
            self._symspell = symspell
        return self._symspell

    def near(self, word: str, max_distance: int = 2) -> list[tuple[int, int, str]]:
        """Other catalog words within `max_distance` edits of `word`: (distance, count, word), as SymSpell finds them."""
        from symspellpy import Verbosity

        found = self.symspell.lookup(word, Verbosity.ALL, max_edit_distance=max_distance)
        return [(s.distance, s.count, s.term) for s in found if s.term != word]

    def most_frequent(self, limit: int, min_length: int = 1, skip: frozenset[str] = frozenset()) -> list[str]:
        """The `limit` most frequent catalog words of at least `min_length` letters not in `skip` (ties by word)."""
        if self._by_frequency is None:
            self._by_frequency = sorted(self.counts, key=lambda w: (-self.counts[w], w))
        return [w for w in self._by_frequency if len(w) >= min_length and w not in skip][:limit]

    def suggest(self, word: str) -> str | None:
        """The closest, then most frequent, catalog word within `max_distance(word)`, or None."""
        distance = max_distance(word)
        if distance == 0:
            return None
        from symspellpy import Verbosity

        found = self.symspell.lookup(word, Verbosity.CLOSEST, max_edit_distance=distance)
        found = [s for s in found if s.distance > 0]
        return found[0].term if found else None
