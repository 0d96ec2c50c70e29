"""Synonyms in Solr's format, applied to a query (a head start: parsed and tested, not wired into search yet).

A synonyms file holds one rule a line; blank lines and lines starting with `#` are skipped:

    tv, television, telly          equivalent: a query with any of them also searches the others
    laptop, notebook => notebook   explicit: each left-hand phrase in a query is replaced by the right side

Phrases may hold several words ("flat screen, tv"); matching is on whole words of the folded query
(case, accents and quote marks folded as the BM25 analyser does). `\\,` and `\\=>` escapes of Solr are not
supported. `Synonyms.expand(query)` gives the query to search (explicit rules applied) and the extra
phrases that equivalent rules add, for the lexical leg to score (below exact words, like corrected typos)
and for the dense leg to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vitrina.index.errors import IndexStoreError
from vitrina.index.lexical import fold

SYNONYMS_FILE = "synonyms.txt"


class SynonymsError(IndexStoreError):
    """A synonyms file that cannot be read as Solr synonyms; the message names the file and line."""


@dataclass(frozen=True)
class Rule:
    left: tuple[str, ...]  # folded phrases
    right: tuple[str, ...]  # explicit rules: the replacement; equivalent rules: the same phrases as `left`
    explicit: bool


def _phrases(text: str, where: str) -> tuple[str, ...]:
    phrases = tuple(" ".join(fold(p).split()) for p in text.split(","))
    if any(not p for p in phrases):
        raise SynonymsError(f"{where}: an empty phrase (two commas in a row, or a comma at an end)")
    return phrases


def _pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![^\W_])" + r"\s+".join(map(re.escape, phrase.split())) + r"(?![^\W_])")


@dataclass(frozen=True)
class Synonyms:
    rules: tuple[Rule, ...]
    text: str = ""  # the file as read, to store with the index

    @classmethod
    def parse(cls, text: str, source: str = "synonyms") -> "Synonyms":
        rules = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source}, line {number}"
            if "=>" in line:
                left, _, right = line.partition("=>")
                if "=>" in right:
                    raise SynonymsError(f"{where}: two '=>' in one rule")
                rules.append(Rule(_phrases(left, where), _phrases(right, where), True))
            else:
                phrases = _phrases(line, where)
                if len(phrases) < 2:
                    raise SynonymsError(f"{where}: an equivalence needs two phrases or more, separated by commas")
                rules.append(Rule(phrases, phrases, False))
        return cls(tuple(rules), text)

    @classmethod
    def read(cls, path: str | Path) -> "Synonyms":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise SynonymsError(f"cannot read the synonyms file {path}: {exc}") from None
        return cls.parse(text, str(path))

    def save(self, directory: Path) -> None:
        (directory / SYNONYMS_FILE).write_text(self.text, encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> "Synonyms | None":
        """The synonyms stored in `directory`, or None where there are none."""
        path = directory / SYNONYMS_FILE
        return cls.read(path) if path.is_file() else None

    def expand(self, query: str) -> tuple[str, tuple[str, ...]]:
        """(the query to search, extra phrases): explicit rules replace their left-hand phrases in the folded
        query; equivalent rules whose phrase the query holds add their other phrases, each once."""
        text = " ".join(fold(query).split())
        for rule in self.rules:
            if rule.explicit:
                for phrase in sorted(rule.left, key=len, reverse=True):
                    text = _pattern(phrase).sub(" ".join(rule.right), text)
        extras: list[str] = []
        for rule in self.rules:
            if not rule.explicit and any(_pattern(p).search(text) for p in rule.left):
                extras += [p for p in rule.right if not _pattern(p).search(text) and p not in extras]
        return text, tuple(extras)
