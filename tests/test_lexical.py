"""BM25 lexical index, its analyser (units, folding), rank fusion, and query cleaning."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from vitrina.engine.errors import QueryError
from vitrina.engine.query.hits import MAX_QUERY_CHARS, clean_query
from vitrina.index import Analyzer, IndexStoreError, LexicalIndex, LexicalConfig
from vitrina.index.hybrid import HybridConfig, fuse, reciprocal_rank_fusion, score_blend

TITLES = [
    "Everbilt 1/2 in. x 10 ft. Copper Pipe",
    'Masonite 36 in. x 80 in. Steel Entry Door',
    "BEHR Premium 1-gal. Deck Stain",
    "Café Crème Ceramic Mug",
    "Husky 5-Gallon Bucket",
    "Steel Garden Hose Reel",
]


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(LexicalConfig())


class TestAnalyzer:
    @pytest.mark.parametrize("spelling", ['36"', "36 in.", "36 inch", "36 inches", "36in", "36\u2033", "36 IN"])
    def test_inch_spellings_share_a_token(self, analyzer, spelling):
        assert "36in" in analyzer.tokens(spelling) and "36" in analyzer.tokens(spelling)

    def test_fractions_and_feet(self, analyzer):
        tokens = analyzer.tokens("1/2 in. x 10 ft. pipe")
        assert {"1/2", "1/2in", "10", "10ft", "pipe"} <= set(tokens)

    def test_dimensions_split_on_x(self, analyzer):
        assert {"36in", "80in"} <= set(analyzer.tokens('36"x80" door'))
        assert {"2", "4"} <= set(analyzer.tokens("2x4"))

    def test_hyphenated_and_glued_units(self, analyzer):
        assert "1gal" in analyzer.tokens("1-gal.") and "5gal" in analyzer.tokens("5gallon")

    def test_thousands_separator(self, analyzer):
        assert "1000lb" in analyzer.tokens("1,000 lbs")

    def test_case_punctuation_and_accents_fold(self, analyzer):
        assert analyzer.tokens("CAFÉ, Crème!") == analyzer.tokens("cafe creme")

    def test_ascii_text_folds_as_the_full_unicode_normalisation_does(self):
        import unicodedata

        from vitrina.index.lexical import _QUOTES, fold

        def normalised(text: str) -> str:  # the whole path, which ASCII text now skips
            text = unicodedata.normalize("NFKD", text.translate(_QUOTES))
            return unicodedata.normalize("NFKC", "".join(c for c in text if not unicodedata.combining(c))).casefold()

        samples = [chr(i) for i in range(128)] + ["Ice-Maker 2x4 \u201cPro\u201d 36\u2033", "CAF\u00c9 \ufb01ne", "DeWALT 20V MAX*"]
        assert [fold(t) for t in samples] == [normalised(t) for t in samples]
        assert fold("CAF\u00c9 \ufb01ne") == "cafe fine" and fold("\u2018Pro\u2019") == "'pro'"

    def test_stopwords_dropped_and_words_stemmed(self, analyzer):
        assert analyzer.tokens("the running shoes") == ["run", "shoe"]

    def test_non_latin_text_is_kept(self, analyzer):
        assert analyzer.tokens("Кроссовки мужские") != []
        assert analyzer.tokens("运动鞋") == ["运动鞋"]

    def test_no_stemmer(self):
        assert Analyzer(LexicalConfig(stemmer=None)).tokens("running shoes") == ["running", "shoes"]

    def test_unknown_settings_are_refused(self):
        with pytest.raises(IndexStoreError, match="stemmer language"):
            Analyzer(LexicalConfig(stemmer="klingon"))
        with pytest.raises(IndexStoreError, match="analyser"):
            Analyzer(LexicalConfig(analyzer="other-9"))


@pytest.fixture(scope="module")
def index() -> LexicalIndex:
    return LexicalIndex.build(TITLES)


class TestLexicalIndex:
    def test_unit_spelling_finds_the_product(self, index):
        scores, rows = index.search(['36" steel door', "half inch copper pipe 1/2 inch", "5 gallon bucket"], 3)
        assert rows[0, 0] == 1 and rows[1, 0] == 0 and rows[2, 0] == 4
        assert np.all(np.diff(scores, axis=1) <= 0)

    def test_no_shared_token_returns_nothing(self, index):
        scores, rows = index.search(["zzzz qqqq"], 5)
        assert rows.tolist() == [[-1] * 5] and scores.tolist() == [[0.0] * 5]

    def test_only_matching_products_are_returned(self, index):
        _, rows = index.search(["steel"], 6)
        assert sorted(rows[0][rows[0] >= 0].tolist()) == [1, 5]

    def test_k_larger_than_catalog(self, index):
        _, rows = index.search(["steel"], 50)
        assert rows.shape == (1, 50) and (rows[0] >= 0).sum() == 2

    def test_coverage_is_the_share_of_query_tokens_held(self, index):
        # tokens: steel, door, 36, 36in; row 1 (Masonite 36 in. steel door) holds all four,
        # row 5 (Steel Garden Hose Reel) only "steel", row 3 (the mug) none
        coverage = index.coverage_of('36" steel door', np.array([1, 5, 3]))
        assert coverage.tolist() == pytest.approx([1.0, 0.25, 0.0])

    def test_coverage_counts_unknown_words_as_missing(self, index):
        assert index.coverage_of("steel zzzz", np.array([5])).tolist() == [0.5]
        assert index.coverage_of("the", np.array([0, 1])).tolist() == [0.0, 0.0]  # a stopword only: no tokens

    def test_save_and_load_round_trip(self, index, tmp_path):
        index.save(tmp_path / "lexical")
        loaded = LexicalIndex.load(tmp_path / "lexical", index.describe())
        for query in ("copper pipe", 'door 80"'):
            assert np.array_equal(loaded.search([query], 3)[1], index.search([query], 3)[1])

    def test_load_refuses_a_missing_directory(self, index, tmp_path):
        with pytest.raises(IndexStoreError, match="lexical index missing"):
            LexicalIndex.load(tmp_path / "nope", index.describe())


def result(rows: list[list[int]], scores: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(scores, dtype=np.float32), np.array(rows, dtype=np.int64)


class TestRankFusion:
    def test_rrf_hand_computed(self):
        lexical = result([[1, 2, 3]], [[9, 8, 7]])
        dense = result([[3, 1, -1]], [[0.9, 0.8, 0.0]])
        scores, rows = reciprocal_rank_fusion([lexical, dense], k=3, rrf_k=60)
        # 1: 1/61 + 1/62; 3: 1/63 + 1/61; 2: 1/62
        assert rows.tolist() == [[1, 3, 2]]
        assert scores[0].tolist() == pytest.approx([1 / 61 + 1 / 62, 1 / 63 + 1 / 61, 1 / 62])

    def test_blend_hand_computed(self):
        lexical = result([[1, 2]], [[10.0, 5.0]])  # normalised 1, 0
        dense = result([[2, 3]], [[0.8, 0.4]])  # normalised 1, 0
        scores, rows = score_blend(lexical, dense, k=3, dense_weight=0.25)
        # 1: 0.75; 2: 0 + 0.25; 3: 0
        assert rows.tolist() == [[1, 2, 3]]
        assert scores[0].tolist() == pytest.approx([0.75, 0.25, 0.0])

    def test_rescorers_give_one_sided_candidates_their_real_scores(self):
        lexical = result([[1, 2]], [[10.0, 5.0]])
        dense = result([[3, 2]], [[0.9, 0.8]])
        _, rows = score_blend(lexical, dense, k=3, dense_weight=0.5)
        assert rows.tolist() == [[1, 3, 2]]  # 1 and 3 tie at 0.5 (each is its side's best, the other's lowest)
        bm25 = {1: 10.0, 2: 5.0, 3: 9.0}  # row 3, found by the dense side only, matches the words well
        cosine = {1: 0.1, 2: 0.8, 3: 0.9}
        scores, rows = score_blend(
            lexical, dense, k=3, dense_weight=0.5,
            lexical_rescorer=lambda i, r: np.array([bm25[x] for x in r]),
            dense_rescorer=lambda i, r: np.array([cosine[x] for x in r]),
        )
        # lexical over {1,2,3}: 1, 0, 0.8; dense: 0, 0.875, 1
        assert rows.tolist() == [[3, 1, 2]]
        assert scores[0].tolist() == pytest.approx([0.9, 0.5, 0.4375])

    def test_coverage_lifts_products_holding_every_query_word(self):
        lexical = result([[1, 2]], [[10.0, 5.0]])  # normalised 1, 0
        dense = result([[2, 1]], [[0.8, 0.4]])  # normalised 1, 0
        held = {1: 0.5, 2: 1.0}
        scores, rows = score_blend(lexical, dense, k=2, dense_weight=0.4,
                                   coverage=lambda i, r: np.array([held[x] for x in r]), coverage_weight=1.5)
        # 1: 0.6 + 1.5 * 0.5 = 1.35; 2: 0.4 + 1.5 * 1.0 = 1.9
        assert rows.tolist() == [[2, 1]]
        assert scores[0].tolist() == pytest.approx([1.9, 1.35])
        _, rows = score_blend(lexical, dense, k=2, dense_weight=0.4, coverage=lambda i, r: np.array([held[x] for x in r]))
        assert rows.tolist() == [[1, 2]]  # coverage weight 0: the plain blend

    def test_a_rescorer_may_know_nothing_of_a_row(self):
        nan_dense = lambda i, r: np.array([np.nan if x == 2 else 0.5 for x in r])  # noqa: E731 (row 2 has no vector)
        scores, rows = score_blend(result([[2, 1]], [[3.0, 1.0]]), result([[1]], [[0.5]]), k=2, dense_weight=0.4,
                                   dense_rescorer=nan_dense)
        assert rows.tolist() == [[2, 1]]
        assert scores[0].tolist() == pytest.approx([0.6, 0.4])  # row 2 counts as the dense side's lowest

    def test_blend_with_an_empty_side(self):
        lexical = result([[-1, -1]], [[0.0, 0.0]])
        dense = result([[4, 5]], [[0.5, 0.1]])
        _, rows = score_blend(lexical, dense, k=2, dense_weight=0.3)
        assert rows.tolist() == [[4, 5]]

    def test_ties_are_broken_by_row(self):
        tie = result([[7, 3]], [[1.0, 1.0]])
        _, rows = score_blend(tie, result([[-1, -1]], [[0, 0]]), k=2, dense_weight=0.5)
        assert rows.tolist() == [[3, 7]]

    def test_fewer_candidates_than_k_pads_with_minus_one(self):
        scores, rows = fuse(result([[1]], [[2.0]]), result([[1]], [[0.5]]), 4, HybridConfig())
        assert rows.tolist() == [[1, -1, -1, -1]]

    def test_settings_are_checked(self):
        with pytest.raises(ValueError, match="fusion method"):
            HybridConfig(method="max")
        with pytest.raises(ValueError, match="dense_weight"):
            HybridConfig(dense_weight=1.5)
        for bad in (-0.1, float("nan"), float("inf")):
            with pytest.raises(ValueError, match="coverage_weight"):
                HybridConfig(coverage_weight=bad)


class TestCleanQuery:
    @pytest.mark.parametrize("query", ["", "   ", "\t\n", "\x00\x01"])
    def test_empty_queries_are_refused(self, query):
        with pytest.raises(QueryError, match="empty"):
            clean_query(query)

    def test_whitespace_and_control_characters_collapse(self):
        assert clean_query("  red\tshoes\x00 size\n9 ") == "red shoes size 9"

    def test_long_query_truncated_at_a_word_with_a_warning(self, caplog):
        query = "waterproof " * 100
        with caplog.at_level(logging.WARNING, logger="vitrina"):
            cleaned = clean_query(query)
        assert len(cleaned) <= MAX_QUERY_CHARS and cleaned.endswith("waterproof")
        assert "truncated" in caplog.text

    def test_units_and_non_ascii_survive(self):
        assert clean_query('36" Tür 1/2 in.') == '36" Tür 1/2 in.'
