"""Solr-format synonyms: parsing (errors name the line) and query expansion (not wired into search yet)."""

from __future__ import annotations

import pytest

from vitrina.index.synonyms import Synonyms, SynonymsError

RULES = """
# comments and blank lines are skipped

tv, television, telly
flat screen, flatscreen
laptop, Notebook => notebook
couch => sofa, settee
"""


@pytest.fixture(scope="module")
def synonyms() -> Synonyms:
    return Synonyms.parse(RULES, "syn.txt")


def test_equivalent_phrases_add_the_others(synonyms):
    assert synonyms.expand("Samsung TV 55 in") == ("samsung tv 55 in", ("television", "telly"))
    assert synonyms.expand("flat screen television") == ("flat screen television", ("tv", "telly", "flatscreen"))


def test_explicit_rules_replace_the_left_side(synonyms):
    assert synonyms.expand("gaming LAPTOP bag") == ("gaming notebook bag", ())
    assert synonyms.expand("leather couch") == ("leather sofa settee", ())


def test_only_whole_words_match(synonyms):
    assert synonyms.expand("tvs and laptops") == ("tvs and laptops", ())
    assert synonyms.expand("stv-1") == ("stv-1", ())


def test_store_and_load(synonyms, tmp_path):
    assert Synonyms.load(tmp_path) is None
    synonyms.save(tmp_path)
    assert Synonyms.load(tmp_path) == synonyms


@pytest.mark.parametrize("text, message", [
    ("tv", "line 1: an equivalence needs two phrases"),
    ("a,,b", "line 1: an empty phrase"),
    ("ok, fine\na => b => c", "line 2: two '=>'"),
    ("a =>", "line 1: an empty phrase"),
])
def test_bad_rules_name_the_line(text, message):
    with pytest.raises(SynonymsError, match=message):
        Synonyms.parse(text, "syn.txt")
