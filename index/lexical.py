"""LexicalIndex: BM25 (bm25s) over product text, with an analyser that keeps numbers and units.

Product titles are full of measurements (`1/2 in.`, `36"`, `5 gal.`) that shoppers type in other
spellings (`1/2 inch`, `36 in`). The analyser folds case, accents and quote marks, keeps numbers
(fractions and decimals included) and, after a number, adds one token joining it to its unit in a
canonical spelling, so `36"`, `36 in.` and `36 inches` all give `36` and `36in`.

Query words the catalog never uses are corrected to catalog words (`index.typos`) when the index
has a vocabulary (`vocabulary.json` beside the BM25 files); the corrected words score below exact ones.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from vitrina.index.bm25_files import STOPWORDS_EN, StoredBM25
from vitrina.index.errors import IndexStoreError
from vitrina.index.typos import _ANY_WORD, FUZZY_WEIGHT, Correction, Vocabulary, is_fuzzable

if TYPE_CHECKING:
    import bm25s

    from vitrina.index.synonyms import Expansion, Synonyms

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
    text = text.translate(_QUOTES)
    if text.isascii():  # normalising leaves ASCII as it is and it has no accents: half the BM25 build of 10k titles
        return text.casefold()
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return unicodedata.normalize("NFKC", text).casefold()


class Analyzer:
    """Text -> BM25 tokens: folding, numbers with units, stopwords, stemming."""

    def __init__(self, settings: LexicalConfig) -> None:
        if settings.analyzer != ANALYZER:
            raise IndexStoreError(f"unknown lexical analyser {settings.analyzer!r}; this Vitrina has {ANALYZER!r}")
        self.settings = settings
        self._stopwords = frozenset(STOPWORDS_EN if settings.stopwords == "en" else ())
        if settings.stopwords not in (None, "en"):
            raise IndexStoreError(f"unknown stopword list {settings.stopwords!r}; use 'en' or none")
        self._stem = self._stemmer(settings.stemmer)

    @property
    def stopwords(self) -> frozenset[str]:
        """The words the analyser drops (none when stopwords are off)."""
        return self._stopwords

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

    def __init__(self, retriever: bm25s.BM25 | StoredBM25, settings: LexicalConfig, count: int,
                 vocabulary: Vocabulary | None = None) -> None:
        self.retriever = retriever
        self.settings = settings
        self.count = count
        self.analyzer = Analyzer(settings)
        self.vocabulary = vocabulary  # None (an index built before typo tolerance): queries are never corrected
        self.correct_typos = True  # False: search the query as typed even where a vocabulary exists
        self._corrections: dict[str, Correction | None] = {}
        self.synonyms: Synonyms | None = None  # the index's synonyms (index.synonyms): expand the corrected query

    @classmethod
    def build(cls, texts: Sequence[str], settings: LexicalConfig | None = None) -> "LexicalIndex":
        import bm25s  # building only: its import loads scipy.sparse, which a search does without

        logging.getLogger("bm25s").setLevel(logging.NOTSET)  # its import sets DEBUG: its notes reached stderr under -q

        settings = settings or LexicalConfig()
        index = cls(bm25s.BM25(method=settings.method, k1=settings.k1, b=settings.b), settings, len(texts),
                    Vocabulary.build(fold(t) for t in texts))
        index.retriever.index([index.analyzer.tokens(t) for t in texts], show_progress=False)
        return index

    def correct(self, query: str) -> Correction | None:
        """The query with its misspelled words corrected to catalog words, or None where nothing changed
        (no vocabulary, correction off, or every word known, too short, or holding a digit)."""
        if self.vocabulary is None or not self.correct_typos:
            return None
        if query in self._corrections:
            return self._corrections[query]
        fixes: dict[str, str] = {}
        vocab = self.retriever.vocab_dict
        for word in _ANY_WORD.findall(fold(query)):
            if word in fixes or not is_fuzzable(word) or word in self.vocabulary or word in _UNIT_OF:
                continue
            if self.synonyms is not None and word in self.synonyms.words:  # a shop's word: expanded, not corrected
                continue
            tokens = self.analyzer.tokens(word)
            if not tokens or any(t in vocab for t in tokens):  # a stopword, or a known stem ("jacketing")
                continue
            right = self.vocabulary.suggest(word)
            if right is not None:
                fixes[word] = right
        correction = None
        if fixes:
            text = _ANY_WORD.sub(lambda m: fixes.get(fold(m.group()), m.group()), query)
            correction = Correction(text, tuple(fixes.items()))
        if len(self._corrections) >= 10_000:
            self._corrections.clear()
        self._corrections[query] = correction
        return correction

    def expand(self, query: str) -> Expansion | None:
        """The synonyms' expansion of the query once its typos are corrected (None: no synonyms, or no rule
        matches it)."""
        if self.synonyms is None:
            return None
        correction = self.correct(query)
        return self.synonyms.expand(query if correction is None else correction.text)

    def _doc_scores(self, query: str) -> np.ndarray | None:
        """BM25 scores of every product for the query (corrected words weighted FUZZY_WEIGHT, words added by
        synonyms their weight), or None where no query token is in the catalog."""
        ids = self._token_ids(query)
        correction = self.correct(query)
        fuzzy: list[int] = []
        if correction is not None:
            vocab = self.retriever.vocab_dict
            fuzzy = [vocab[t] for t in self.analyzer.tokens(" ".join(right for _, right in correction.fixes))
                     if t in vocab and vocab[t] not in ids]
        expansion = self.expand(query)
        added: list[int] = []
        if expansion is not None:  # search the rewritten query; corrected words keep their weight
            ids = [t for t in self._token_ids(expansion.text) if t not in fuzzy]
            added = [t for t in self._token_ids(" ".join(expansion.extras)) if t not in ids and t not in fuzzy]
        if not ids and not fuzzy and not added:
            return None
        scores = self.retriever.get_scores(ids) if ids else np.zeros(self.count, dtype=np.float32)
        if fuzzy:
            scores = scores + np.float32(FUZZY_WEIGHT) * self.retriever.get_scores(fuzzy)
        if added:
            scores = scores + np.float32(expansion.weight) * self.retriever.get_scores(list(dict.fromkeys(added)))
        return scores

    def search(self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (len(queries), k) best first; rows -1 where fewer products match.

        Products sharing no token with the query score 0 and are not returned; with `allowed` (a
        boolean mask over rows), neither are the products outside it.
        """
        k_eff = min(k, self.count)
        scores = np.zeros((len(queries), k), dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for i, query in enumerate(queries):
            doc_scores = self._doc_scores(query) if k_eff else None
            if doc_scores is None:
                continue
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
        scores = self._doc_scores(query)
        if scores is None:
            return np.zeros(len(rows), dtype=np.float32)
        return scores[np.asarray(rows, dtype=np.int64)]

    def coverage_of(self, query: str, rows: np.ndarray) -> np.ndarray:
        """Share of the query's distinct tokens that each of `rows` contains (0 to 1).

        Tokens the catalog never uses count as missing, so "all words present" scores 1 only when
        the product really holds every word, number and unit of the query. A corrected query counts
        the corrected words, not the typed ones; with synonyms, the words of the rewritten query, a phrase's
        words counting as held where the product holds all words of one of its equivalents.
        """
        correction = self.correct(query)
        expansion = self.expand(query)
        text = expansion.text if expansion is not None else query if correction is None else correction.text
        tokens = set(self.analyzer.tokens(text))
        rows = np.asarray(rows, dtype=np.int64)
        found = np.zeros(len(rows), dtype=np.float64)
        if not tokens:
            return found
        held = {token: self._holds(token, rows) for token in tokens}
        for phrase, alternatives in expansion.groups if expansion is not None else ():
            by_synonym = np.zeros(len(rows), dtype=bool)
            for alternative in alternatives:
                words = set(self.analyzer.tokens(alternative))
                if words:
                    by_synonym |= np.logical_and.reduce([self._holds(t, rows) for t in words])
            for token in set(self.analyzer.tokens(phrase)) & tokens:
                held[token] = held[token] | by_synonym
        for token in tokens:
            found += held[token]
        return found / len(tokens)

    def _holds(self, token: str, rows: np.ndarray) -> np.ndarray:
        """Whether each of `rows` holds the token (a BM25 score is > 0 exactly there)."""
        vocab = self.retriever.vocab_dict
        if token not in vocab:
            return np.zeros(len(rows), dtype=bool)
        return self.retriever.get_scores([vocab[token]])[rows] > 0

    def _token_ids(self, query: str) -> list[int]:
        vocab = self.retriever.vocab_dict
        return [vocab[t] for t in self.analyzer.tokens(query) if t in vocab]

    def describe(self) -> dict:
        """What the manifest records: tokenizer and BM25 settings, and how many texts were indexed."""
        return {"settings": asdict(self.settings), "count": self.count}

    def save(self, directory: Path) -> None:
        self.retriever.save(str(directory), show_progress=False)
        if self.vocabulary is not None:
            self.vocabulary.save(directory)

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
            retriever = StoredBM25.load(directory)  # bm25s's files and scores, without importing bm25s (issue 19)
        except Exception as exc:  # noqa: BLE001 - json, numpy and OS errors alike for damaged files
            raise IndexStoreError(
                f"the lexical index in {directory} is damaged ({type(exc).__name__}: {exc}); re-index the catalog"
            ) from None
        if retriever.scores.get("num_docs", count) != count:
            raise IndexStoreError(f"the lexical index in {directory} covers {retriever.scores.get('num_docs')} products, "
                                  f"the manifest says {count}; re-index the catalog")
        return cls(retriever, settings, count, Vocabulary.load(directory))
