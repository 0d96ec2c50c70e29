"""Synonyms in Solr's format, stored with an index (`settings/synonyms.txt`) and applied to both legs of a search.

A synonyms file holds one rule a line; blank lines and lines starting with `#` are skipped:

    tv, television, telly          equivalent: a query with any of them also searches the others
    laptop, notebook => notebook   explicit: each left-hand phrase in a query is replaced by the right side

Phrases may hold several words ("flat screen, tv"); a phrase matches whole words of the folded query (case,
accents and quote marks folded as the BM25 analyser does; punctuation between words does not count). Explicit
rules rewrite the query in one pass, longest phrase first (the output is not rewritten again, so `a => b` with
`b => a` swaps nothing twice); equivalences then add the other phrases of each rule whose phrase the rewritten
query holds, one level deep (no chains). `\\,` and `\\=>` escapes of Solr are not supported.

How search uses them (engine.query.search, index.lexical): typos are corrected first (a word of a synonym
phrase is a known word, never "corrected"), then the corrected query is expanded. The lexical leg searches the
rewritten query and scores the added phrases' words at SYNONYM_WEIGHT; the dense leg encodes the rewritten
query (`Synonyms.dense_query`; appending the equivalents was measured and lost). A query no rule matches searches
exactly as without synonyms.

Hostile files are bounded: at most MAX_FILE_BYTES, MAX_LINE_CHARS a line, MAX_PHRASES a rule, MAX_PHRASE_WORDS
words a phrase, a phrase in at most MAX_RULES_PER_PHRASE rules, text only (no NUL or control bytes, UTF-8);
errors name the file and line. A query adds at most MAX_EXTRAS phrases (the first rules in file order).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Mapping

from vitrina.index.errors import IndexStoreError
from vitrina.index.lexical import fold

SYNONYMS_FILE = "synonyms.txt"  # the index settings file (index.settings) holding them
SYNONYM_WEIGHT = 0.9  # the BM25 weight of an added phrase's words (typed words weigh 1, corrected typos 0.8)
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_LINE_CHARS = 4_000
MAX_PHRASES = 100  # phrases in one rule
MAX_PHRASE_WORDS = 10
MAX_RULES_PER_PHRASE = 20  # rules one phrase may appear in (put its synonyms on one line instead)
MAX_EXTRAS = 32  # phrases one query may add
_WORD = re.compile(r"[^\W_]+")  # the words phrases match on (letters and digits, as typos.py reads a query)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # control characters but tab, CR and LF


class SynonymsError(IndexStoreError):
    """A synonyms file that cannot be read as Solr synonyms; the message names the file and line."""


@dataclass(frozen=True)
class Rule:
    left: tuple[str, ...]  # folded phrases
    right: tuple[str, ...]  # explicit rules: the replacement; equivalent rules: the same phrases as `left`
    explicit: bool
    line: int = 0  # in the file, from 1


@dataclass(frozen=True)
class Expansion:
    """What the synonyms make of one query: the query to search and, per phrase it holds, its equivalents."""

    text: str  # the folded query with explicit rules applied
    groups: tuple[tuple[str, tuple[str, ...]], ...]  # (a phrase the text holds, the equivalents it lacks)
    rewritten: bool = False  # whether an explicit rule changed the query
    weight: float = SYNONYM_WEIGHT  # of the added phrases' words in the lexical leg

    @property
    def extras(self) -> tuple[str, ...]:
        """The phrases equivalences add, each once (at most MAX_EXTRAS)."""
        return tuple(dict.fromkeys(p for _, alternatives in self.groups for p in alternatives))[:MAX_EXTRAS]

def _words(phrase: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(phrase))


def _phrases(text: str, where: str) -> tuple[str, ...]:
    phrases = tuple(" ".join(_folded(p).split()) for p in text.split(","))
    if any(not p for p in phrases):
        raise SynonymsError(f"{where}: an empty phrase (two commas in a row, or a comma at an end)")
    if len(phrases) > MAX_PHRASES:
        raise SynonymsError(f"{where}: {len(phrases)} phrases in one rule; at most {MAX_PHRASES}")
    for phrase in phrases:
        words = _words(phrase)
        if not words:
            raise SynonymsError(f"{where}: the phrase {phrase[:40]!r} has no letters or digits")
        if len(words) > MAX_PHRASE_WORDS:
            raise SynonymsError(f"{where}: the phrase {phrase[:40]!r}... has {len(words)} words; at most {MAX_PHRASE_WORDS}")
    return tuple(dict.fromkeys(phrases))


def _check_text(line: str, where: str) -> None:
    if len(line) > MAX_LINE_CHARS:
        raise SynonymsError(f"{where}: the line is {len(line):,} characters long; at most {MAX_LINE_CHARS:,}")
    bad = _CONTROL.search(line)
    if bad is not None:
        raise SynonymsError(f"{where}: control character U+{ord(bad.group()):04X}; a synonyms file is text "
                            "(is this a binary file?)")


def _folded(text: str) -> str:
    return text.lower() if text.isascii() else fold(text)  # ASCII: folding is lowercasing


@dataclass(frozen=True)
class Synonyms:
    rules: tuple[Rule, ...]
    text: str = ""  # the file as read, to store with the index
    _index: dict = field(default_factory=dict, compare=False, repr=False)  # first word -> [(words, phrase, rule)]

    def __post_init__(self) -> None:
        index: dict[str, list[tuple[tuple[str, ...], str, Rule]]] = {}
        for rule in self.rules:
            for phrase in rule.left:
                words = _words(phrase)
                index.setdefault(words[0], []).append((words, phrase, rule))
        for entries in index.values():
            entries.sort(key=lambda e: -len(e[0]))  # longest phrase first; equal lengths in file order
        object.__setattr__(self, "_index", index)

    @classmethod
    def parse(cls, text: str, source: str = "synonyms") -> "Synonyms":
        """Rules from a file's text; SynonymsError names `source` and the line of the first problem."""
        rules = []
        seen: dict[str, int] = {}  # phrase -> rules it appears in
        for number, raw in enumerate(text.split("\n"), 1):
            where = f"{source}, line {number}"
            _check_text(raw, where)
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if "=>" in line:
                left, _, right = line.partition("=>")
                if "=>" in right:
                    raise SynonymsError(f"{where}: two '=>' in one rule")
                rule = Rule(_phrases(left, where), _phrases(right, where), True, number)
            else:
                phrases = _phrases(line, where)
                if len(phrases) < 2:
                    raise SynonymsError(f"{where}: an equivalence needs two phrases or more, separated by commas")
                rule = Rule(phrases, phrases, False, number)
            for phrase in rule.left:
                seen[phrase] = seen.get(phrase, 0) + 1
                if seen[phrase] > MAX_RULES_PER_PHRASE:
                    raise SynonymsError(f"{where}: {phrase[:40]!r} is in more than {MAX_RULES_PER_PHRASE} rules; "
                                        "put its synonyms on one line")
            rules.append(rule)
        return cls(tuple(rules), text)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "synonyms") -> "Synonyms":
        """Rules from a file's bytes (UTF-8, an optional BOM); errors name `source` and the line."""
        if len(data) > MAX_FILE_BYTES:
            raise SynonymsError(f"{source} is {len(data):,} bytes; a synonyms file may hold at most {MAX_FILE_BYTES:,}")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise SynonymsError(f"{source}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                                "a synonyms file is text (is this a binary file?)") from None
        return cls.parse(text, source)

    @classmethod
    def read(cls, path: str | Path) -> "Synonyms":
        """Rules from a synonyms file; SynonymsError names the file (and line) of a problem."""
        path = Path(path)
        try:
            if not path.is_file():
                raise SynonymsError(f"synonyms file not found: {path}" if not path.exists()
                                    else f"{path} is not a file; give a synonyms file")
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise SynonymsError(f"{path} is {size:,} bytes; a synonyms file may hold at most {MAX_FILE_BYTES:,}")
            data = path.read_bytes()
        except OSError as exc:
            raise SynonymsError(f"cannot read the synonyms file {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data, str(path))

    def to_bytes(self) -> bytes:
        """The file as stored with an index."""
        return self.text.encode("utf-8")

    @classmethod
    def stored(cls, settings: Mapping[str, bytes], source: str = SYNONYMS_FILE) -> "Synonyms | None":
        """The synonyms among an index's settings files (None where it has none)."""
        data = settings.get(SYNONYMS_FILE)
        return None if data is None else cls.from_bytes(data, source)

    def save(self, directory: Path) -> None:
        (directory / SYNONYMS_FILE).write_text(self.text, encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "Synonyms | None":
        """The synonyms file in `directory`, or None where there is none."""
        path = directory / SYNONYMS_FILE
        return cls.read(path) if path.is_file() else None

    @cached_property
    def words(self) -> frozenset[str]:
        """Every word of every phrase: words the typo corrector must take as known."""
        return frozenset(w for rule in self.rules for p in (*rule.left, *rule.right) for w in _words(p))

    def expand(self, query: str) -> Expansion | None:
        """The query rewritten by explicit rules and the equivalents of the phrases it holds; None where no
        rule matches (the query is searched exactly as typed)."""
        text = " ".join(_folded(query).split())
        rewritten = self._rewrite(text)
        groups = self._equivalents(rewritten)
        if rewritten == text and not groups:
            return None
        return Expansion(rewritten, groups, rewritten != text)

    def dense_query(self, query: str) -> str:
        """What the dense leg encodes: the query rewritten by explicit rules, else the query as given (equivalents
        are not appended: on the Home Depot dev queries a hardware shop's synonyms touch, appending them cost 3%
        nDCG@10 against the rewritten query alone, benchmarks/synonyms.py)."""
        expansion = self.expand(query)
        return expansion.text if expansion is not None and expansion.rewritten else query

    def _matches(self, text: str, explicit: bool) -> list[tuple[int, int, str, Rule]]:
        """(start, end, phrase, rule) of the phrases of `explicit` (or equivalent) rules in `text`, scanning
        left to right; explicit matches do not overlap (longest first), equivalent ones may."""
        spans = [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]
        words = [w for w, _, _ in spans]
        found = []
        i = 0
        while i < len(words):
            step = 1
            for phrase_words, phrase, rule in self._index.get(words[i], ()):
                if rule.explicit == explicit and tuple(words[i : i + len(phrase_words)]) == phrase_words:
                    found.append((spans[i][1], spans[i + len(phrase_words) - 1][2], phrase, rule))
                    if explicit:
                        step = len(phrase_words)
                        break
            i += step
        return found

    def _rewrite(self, text: str) -> str:
        pieces, end = [], 0
        for start, stop, _, rule in self._matches(text, explicit=True):
            pieces += [text[end:start], " ".join(rule.right)]
            end = stop
        return "".join(pieces) + text[end:] if pieces else text

    def _equivalents(self, text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        matches = sorted(self._matches(text, explicit=False), key=lambda m: (m[3].line, m[0]))
        held = {phrase for _, _, phrase, _ in matches}
        groups: dict[str, list[str]] = {}
        added: set[str] = set()
        for _, _, phrase, rule in matches:
            alternatives = groups.setdefault(phrase, [])
            for p in rule.right:
                if p not in held and p not in alternatives and (p in added or len(added) < MAX_EXTRAS):
                    alternatives.append(p)
                    added.add(p)
        return tuple((phrase, tuple(alts)) for phrase, alts in groups.items() if alts)
