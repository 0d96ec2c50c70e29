"""Ranking metrics against hand-computed values."""

import math

import pytest

from vitrina.engine.evaluate.relevance import (
    average_precision_at_k,
    dcg_at_k,
    mean,
    ndcg_at_k,
    precision_at_k,
    rank_by_score,
    recall_at_k,
    reciprocal_rank_at_k,
)

LOG2_3 = math.log2(3)  # the discount of rank 2


class TestDcg:
    def test_wikipedia_example(self):
        # 3 + 2/log2(3) + 3/2 + 0 + 1/log2(6) + 2/log2(7)
        assert dcg_at_k([3, 2, 3, 0, 1, 2], 6) == pytest.approx(6.861126688593502)

    def test_cutoff(self):
        assert dcg_at_k([3, 2, 3], 1) == 3.0
        assert dcg_at_k([3, 2, 3], 2) == pytest.approx(3 + 2 / LOG2_3)

    def test_no_gains(self):
        assert dcg_at_k([], 10) == 0.0

    def test_bad_k(self):
        with pytest.raises(ValueError):
            dcg_at_k([1.0], 0)


class TestNdcg:
    def test_ideal_includes_judged_items_not_retrieved(self):
        # DCG = 3 + 0 + 1/2 = 3.5; ideal gains 3, 2, 1: 3 + 2/log2(3) + 1/2
        relevance = {"a": 3.0, "c": 1.0, "d": 2.0}
        assert ndcg_at_k(["a", "b", "c"], relevance, 3) == pytest.approx(3.5 / (3.5 + 2 / LOG2_3))

    def test_perfect_ranking(self):
        assert ndcg_at_k(["a", "b", "c"], {"a": 3.0, "b": 2.0, "c": 1.0}, 3) == pytest.approx(1.0)

    def test_ties_in_relevance_either_order_is_ideal(self):
        relevance = {"a": 2.0, "b": 2.0}
        assert ndcg_at_k(["a", "b"], relevance, 2) == pytest.approx(1.0)
        assert ndcg_at_k(["b", "a"], relevance, 2) == pytest.approx(1.0)

    def test_unjudged_items_count_zero(self):
        # DCG = 2 + 0 + 2/2 = 3; ideal = 2 + 2/log2(3)
        relevance = {"a": 2.0, "b": 2.0}
        assert ndcg_at_k(["a", "unjudged", "b"], relevance, 3) == pytest.approx(3 / (2 + 2 / LOG2_3))

    def test_empty_ranking(self):
        assert ndcg_at_k([], {"a": 1.0}, 10) == 0.0

    def test_k_larger_than_ranking(self):
        assert ndcg_at_k(["a"], {"a": 1.0}, 10) == pytest.approx(1.0)
        # the unretrieved judged item still enters the ideal: 1 / (1 + 1/log2(3))
        assert ndcg_at_k(["a"], {"a": 1.0, "b": 1.0}, 10) == pytest.approx(1 / (1 + 1 / LOG2_3))

    def test_cutoff_ignores_lower_ranks(self):
        assert ndcg_at_k(["x", "a"], {"a": 1.0}, 1) == 0.0

    def test_ideal_cut_at_k(self):
        # ideal@1 is the single best gain, 3; the ranking puts a gain of 3 first
        assert ndcg_at_k(["a"], {"a": 3.0, "b": 3.0, "c": 3.0}, 1) == pytest.approx(1.0)

    def test_query_without_positive_judgement(self):
        assert ndcg_at_k(["a", "b"], {}, 10) == 0.0
        assert ndcg_at_k(["a", "b"], {"a": 0.0}, 10) == 0.0

    def test_bad_k(self):
        with pytest.raises(ValueError):
            ndcg_at_k(["a"], {"a": 1.0}, 0)


class TestPrecision:
    def test_set_of_relevant_ids(self):
        assert precision_at_k(["a", "b", "c"], {"a", "c"}, 2) == 0.5
        assert precision_at_k(["a", "b", "c"], {"a", "c"}, 3) == pytest.approx(2 / 3)

    def test_predicate(self):
        assert precision_at_k(["shirt1", "shoe1", "shirt2"], lambda pid: pid.startswith("shirt"), 3) == pytest.approx(
            2 / 3
        )

    def test_denominator_is_k_when_ranking_is_short(self):
        assert precision_at_k(["a", "b"], {"a", "b"}, 5) == pytest.approx(2 / 5)

    def test_empty_ranking(self):
        assert precision_at_k([], {"a"}, 10) == 0.0

    def test_nothing_relevant(self):
        assert precision_at_k(["a", "b"], set(), 2) == 0.0

    def test_bad_k(self):
        with pytest.raises(ValueError):
            precision_at_k(["a"], {"a"}, 0)


class TestMean:
    def test_values(self):
        assert mean([1.0, 2.0, 4.5]) == pytest.approx(2.5)

    def test_generator(self):
        assert mean(x / 2 for x in range(5)) == pytest.approx(1.0)

    def test_no_values(self):
        with pytest.raises(ValueError):
            mean([])


class TestRecall:
    def test_hand_computed(self):
        assert recall_at_k(["a", "x", "b", "y"], {"a", "b", "c", "d"}, 3) == pytest.approx(2 / 4)

    def test_cutoff_excludes_later_hits(self):
        assert recall_at_k(["x", "y", "a"], {"a"}, 2) == 0.0

    def test_no_relevant_items_scores_zero(self):
        assert recall_at_k(["a"], set(), 10) == 0.0

    def test_empty_ranking(self):
        assert recall_at_k([], {"a"}, 10) == 0.0

    def test_repeated_id_counts_once(self):
        assert recall_at_k(["a", "a"], {"a", "b"}, 2) == pytest.approx(0.5)


class TestReciprocalRank:
    def test_first_relevant_at_rank_three(self):
        assert reciprocal_rank_at_k(["x", "y", "a", "b"], {"a", "b"}, 10) == pytest.approx(1 / 3)

    def test_beyond_cutoff_is_zero(self):
        assert reciprocal_rank_at_k(["x", "y", "a"], {"a"}, 2) == 0.0

    def test_unjudged_only(self):
        assert reciprocal_rank_at_k(["x", "y"], {"a"}, 10) == 0.0

    def test_repeats_do_not_push_ranks_down(self):
        assert reciprocal_rank_at_k(["x", "x", "a"], {"a"}, 10) == pytest.approx(1 / 2)


class TestAveragePrecision:
    def test_hand_computed(self):
        # relevant at ranks 1 and 3: (1/1 + 2/3) / min(10, 3 relevant)
        assert average_precision_at_k(["a", "x", "b", "y"], {"a", "b", "c"}, 10) == pytest.approx((1 + 2 / 3) / 3)

    def test_perfect_top_k_is_one_even_with_more_relevant_than_k(self):
        assert average_precision_at_k(["a", "b"], {"a", "b", "c", "d"}, 2) == pytest.approx(1.0)

    def test_empty_and_no_relevant(self):
        assert average_precision_at_k([], {"a"}, 5) == 0.0
        assert average_precision_at_k(["a"], set(), 5) == 0.0


class TestTies:
    def test_equal_scores_rank_by_id(self):
        assert rank_by_score({"b": 1.0, "a": 1.0, "c": 2.0}) == ["c", "a", "b"]

    def test_tie_order_decides_the_metric_deterministically(self):
        # "a" (relevant) and "b" (unjudged) tie; the id order puts "a" first, every time
        ranking = rank_by_score({"b": 0.5, "a": 0.5})
        assert reciprocal_rank_at_k(ranking, {"a"}, 10) == 1.0
        assert ndcg_at_k(ranking, {"a": 2.0}, 10) == pytest.approx(1.0)

    def test_ndcg_counts_a_repeated_id_once(self):
        assert ndcg_at_k(["a", "a"], {"a": 1.0, "b": 1.0}, 2) == pytest.approx(1 / (1 + 1 / LOG2_3))
