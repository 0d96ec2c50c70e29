"""LexicalIndex: BM25 (bm25s) over product text, with an analyser that keeps numbers and units.

Product titles are full of measurements (`1/2 in.`, `36"`, `5 gal.`) that shoppers type in other
spellings (`1/2 inch`, `36 in`). The analyser folds case, accents and quote marks, keeps numbers
(fractions and decimals included) and, after a number, adds one token joining it to its unit in a
canonical spelling, so `36"`, `36 in.` and `36 inches` all give `36` and `36in`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import bm25s
import numpy as np

from vitrina.index.errors import IndexStoreError

ANALYZER = "vitrina-units-1"

_UNIT_SPELLINGS = {
    "in": ("in", "inch", "inches", '"', "''"),
    "ft": ("ft", "foot", "feet", "'"),
    "gal": ("gal", "gallon", "gallons"),
    "qt": ("qt", "quart", "quarts"),
    "oz": ("oz", "ounce", "ounces"),
    "lb": ("lb", "lbs", "pound", "pounds"),
    "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
    "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
    "v": ("v", "volt", "volts"),
    "w": ("w", "watt", "watts"),
    "amp": ("a", "amp", "amps", "ampere", "amperes"),
    "btu": ("btu", "btus"),
    "gpm": ("gpm",),
    "psi": ("psi",),
    "sq": ("sq",),
    "cu": ("cu",),
    "pk": ("pk", "pack"),
    "pc": ("pc", "pcs", "piece", "pieces"),
}
_UNIT_OF = {spelling: unit for unit, spellings in _UNIT_SPELLINGS.items() for spelling in spellings}
_WORD_UNITS = sorted((s for s in _UNIT_OF if s[0].isalpha()), key=len, reverse=True)
_TOKEN = re.compile(
    r"(?P<num>\d+(?:[.,/]\d+)*)"
    r"(?:[\s-]*(?P<unit>(?:" + "|".join(_WORD_UNITS) + r")(?![^\W\d_])\.?|\"|''|'))?"
    r"|(?P<word>[^\W_]+)"
)
_TIMES = re.compile(r"""(\d["']?)\s*x\s*(?=\d)""")  # 2x4 -> 2 x 4, 36"x80" -> 36" x 80"
_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2033": '"', "\u2018": "'", "\u2019": "'", "\u2032": "'"})


@dataclass(frozen=True)
class LexicalConfig:
    """How text becomes tokens and how BM25 scores them; stored in the manifest with the index."""

    analyzer: str = ANALYZER
    stemmer: str | None = "english"  # a PyStemmer language, or None
    stopwords: str | None = "en"  # bm25s stopword list name, or None
    method: str = "lucene"
    k1: float = 1.5
    b: float = 0.75


def fold(text: str) -> str:
    """Unicode-normalise, casefold, strip accents and unify quote marks and primes."""
    text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", text).casefold()


class Analyzer:
    """Text -> BM25 tokens: folding, numbers with units, stopwords, stemming."""

    def __init__(self, settings: LexicalConfig) -> None:
        if settings.analyzer != ANALYZER:
            raise IndexStoreError(f"unknown lexical analyser {settings.analyzer!r}; this Vitrina has {ANALYZER!r}")
        self.settings = settings
        self._stopwords = frozenset(bm25s.stopwords.STOPWORDS_EN if settings.stopwords == "en" else ())
        if settings.stopwords not in (None, "en"):
            raise IndexStoreError(f"unknown stopword list {settings.stopwords!r}; use 'en' or none")
        self._stem = self._stemmer(settings.stemmer)

    @staticmethod
    def _stemmer(language: str | None):
        if not language:
            return lambda words: words
        import Stemmer  # PyStemmer

        try:
            return Stemmer.Stemmer(language).stemWords
        except KeyError:
            raise IndexStoreError(f"unknown stemmer language {language!r}") from None

    def tokens(self, text: str) -> list[str]:
        out: list[str] = []
        words: list[str] = []
        for match in _TOKEN.finditer(_TIMES.sub(r"\1 x ", fold(text))):
            number, unit, word = match.group("num", "unit", "word")
            if word is not None:
                if len(word) > 1 and word not in self._stopwords:
                    words.append(word)
                continue
            number = number.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", number) else number
            out.append(number)
            if unit:
                out.append(number + _UNIT_OF[unit.rstrip(".")])
        return out + self._stem(words)


class LexicalIndex:
    """BM25 over one text per product row."""

    def __init__(self, retriever: bm25s.BM25, settings: LexicalConfig, count: int) -> None:
        self.retriever = retriever
        self.settings = settings
        self.count = count
        self.analyzer = Analyzer(settings)

    @classmethod
    def build(cls, texts: Sequence[str], settings: LexicalConfig | None = None) -> "LexicalIndex":
        settings = settings or LexicalConfig()
        index = cls(bm25s.BM25(method=settings.method, k1=settings.k1, b=settings.b), settings, len(texts))
        index.retriever.index([index.analyzer.tokens(t) for t in texts], show_progress=False)
        return index

    def search(self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (len(queries), k) best first; rows -1 where fewer products match.

        Products sharing no token with the query score 0 and are not returned; with `allowed` (a
        boolean mask over rows), neither are the products outside it.
        """
        k_eff = min(k, self.count)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for i, ids in enumerate(self._token_ids(q) for q in queries):
            if not ids or k_eff == 0:
                continue
            doc_scores = self.retriever.get_scores(ids)
            if allowed is not None:
                doc_scores = np.where(allowed, doc_scores, 0.0)
            if k_eff < len(doc_scores):  # every product scoring at least the k-th best, so ties resolve by row
                kth = np.partition(doc_scores, len(doc_scores) - k_eff)[len(doc_scores) - k_eff]
                top = np.flatnonzero(doc_scores >= kth)
            else:
                top = np.arange(len(doc_scores))
            top = top[np.lexsort((top, -doc_scores[top]))][:k_eff]
            top = top[doc_scores[top] > 0]
            scores[i, : len(top)] = doc_scores[top]
            rows[i, : len(top)] = top
        return scores, rows

    def scores_of(self, query: str, rows: np.ndarray) -> np.ndarray:
        """The BM25 score of `query` for each of `rows` (0 where no token matches)."""
        ids = self._token_ids(query)
        if not ids:
            return np.zeros(len(rows), dtype=np.float32)
        return self.retriever.get_scores(ids)[np.asarray(rows, dtype=np.int64)]

    def coverage_of(self, query: str, rows: np.ndarray) -> np.ndarray:
        """Share of the query's distinct tokens that each of `rows` contains (0 to 1).

        Tokens the catalog never uses count as missing, so "all words present" scores 1 only when
        the product really holds every word, number and unit of the query.
        """
        tokens = set(self.analyzer.tokens(query))
        rows = np.asarray(rows, dtype=np.int64)
        found = np.zeros(len(rows), dtype=np.float64)
        if not tokens:
            return found
        vocab = self.retriever.vocab_dict
        for token in tokens:
            if token in vocab:  # a BM25 score is > 0 exactly where the text holds the token
                found += self.retriever.get_scores([vocab[token]])[rows] > 0
        return found / len(tokens)

    def _token_ids(self, query: str) -> list[int]:
        vocab = self.retriever.vocab_dict
        return [vocab[t] for t in self.analyzer.tokens(query) if t in vocab]

    def describe(self) -> dict:
        """What the manifest records: tokenizer and BM25 settings, and how many texts were indexed."""
        return {"settings": asdict(self.settings), "count": self.count}

    def save(self, directory: Path) -> None:
        self.retriever.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path, described: dict) -> "LexicalIndex":
        """Load what `save` wrote, with the manifest's `describe()` record."""
        if not directory.is_dir():
            raise IndexStoreError(f"lexical index missing: {directory}; the directory is damaged, re-index it")
        try:
            settings = LexicalConfig(**described["settings"])
            count = int(described["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexStoreError(f"the manifest's lexical record is damaged: {exc}") from None
        try:
            retriever = bm25s.BM25.load(str(directory), mmap=False, show_progress=False)
        except Exception as exc:  # noqa: BLE001 - bm25s raises json, numpy, scipy and OS errors alike for damaged files
            raise IndexStoreError(
                f"the lexical index in {directory} is damaged ({type(exc).__name__}: {exc}); re-index the catalog"
            ) from None
        if retriever.scores.get("num_docs", count) != count:
            raise IndexStoreError(f"the lexical index in {directory} covers {retriever.scores.get('num_docs')} products, "
                                  f"the manifest says {count}; re-index the catalog")
        return cls(retriever, settings, count)
