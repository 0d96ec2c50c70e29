"""A BM25 index as bm25s saved it (`lexical/`), read and scored without importing bm25s.

`import bm25s` loads scipy.sparse, 0.1-0.2 s of CPU that a fresh `vitrina search` spent before answering
(issue 19), though scoring a saved index needs numpy alone. `StoredBM25` reads the same files and computes
the same scores as `bm25s.BM25.load(...).get_scores(token_ids)` (the numpy backend, bit for bit: the same
additions in the same order; tests/test_footprint.py checks it). Building an index still uses bm25s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

PARAMS_FILE = "params.index.json"
VOCAB_FILE = "vocab.index.json"
ARRAY_FILES = {"data": "data.csc.index.npy", "indices": "indices.csc.index.npy", "indptr": "indptr.csc.index.npy"}
NONOCCURRENCE_FILE = "nonoccurrence_array.index.npy"  # only BM25L and BM25+ have one
WITH_NONOCCURRENCE = ("bm25l", "bm25+")
# Lucene's English stopwords, as bm25s ships them (bm25s.stopwords.STOPWORDS_EN; a test checks they agree).
STOPWORDS_EN = ("a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
                "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to",
                "was", "will", "with")


class StoredBM25:
    """The saved scores (CSC: one column of document scores per token), the vocabulary, and `get_scores`."""

    def __init__(self, params: dict, vocab_dict: dict[str, int], scores: dict, nonoccurrence: np.ndarray | None) -> None:
        self.params = params  # as saved (bm25s's settings, num_docs, version): written back by `save`
        self.method = params.get("method", "lucene")
        self.dtype = np.dtype(params.get("dtype", "float32"))
        self.int_dtype = np.dtype(params.get("int_dtype", "int32"))
        self.vocab_dict = vocab_dict
        self.scores = scores  # data, indices, indptr, num_docs: as bm25s.BM25.scores
        self.nonoccurrence_array = nonoccurrence

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = False) -> "StoredBM25":
        """Read what `bm25s.BM25.save` wrote; with `mmap`, the score arrays are memory-mapped.
        Raises OSError or ValueError (json, numpy) for missing or damaged files, as bm25s does."""
        directory = Path(directory)
        params = json.loads((directory / PARAMS_FILE).read_text(encoding="utf-8"))
        vocab_dict = json.loads((directory / VOCAB_FILE).read_text(encoding="utf-8"))
        if not isinstance(params, dict) or not isinstance(vocab_dict, dict):
            raise ValueError(f"{directory} does not hold a bm25s index (its JSON files are not objects)")
        scores: dict = {name: np.load(directory / file, mmap_mode="r" if mmap else None, allow_pickle=False)
                        for name, file in ARRAY_FILES.items()}
        scores["num_docs"] = params.get("num_docs")
        if scores["indptr"].ndim != 1 or len(scores["data"]) != len(scores["indices"]):
            raise ValueError(f"the score arrays in {directory} do not pair up")
        nonoccurrence = None
        if params.get("method") in WITH_NONOCCURRENCE:
            nonoccurrence = np.load(directory / NONOCCURRENCE_FILE, allow_pickle=False)
        return cls(params, vocab_dict, scores, nonoccurrence)

    def get_scores(self, query_tokens_ids: Sequence[int]) -> np.ndarray:
        """The BM25 score of every document for these token ids (bm25s's `get_scores` of ids)."""
        data, indices, indptr = self.scores["data"], self.scores["indices"], self.scores["indptr"]
        ids = np.asarray(query_tokens_ids, dtype=self.int_dtype)
        if int(ids.max(initial=0)) >= len(indptr) - 1:
            raise ValueError(f"token id {int(ids.max())} is not in the index ({len(indptr) - 1} tokens)")
        out = np.zeros(self.scores["num_docs"], dtype=self.dtype)
        for start, end in zip(indptr[ids], indptr[ids + 1]):
            np.add.at(out, indices[start:end], data[start:end])
        if self.nonoccurrence_array is not None:
            out += self.nonoccurrence_array[ids].sum()
        return out

    def save(self, directory: str | Path, show_progress: bool = False) -> None:
        """Write the files `load` reads (as bm25s writes them) into `directory`."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        (target / PARAMS_FILE).write_text(json.dumps(self.params, indent=4), encoding="utf-8")
        (target / VOCAB_FILE).write_text(json.dumps(self.vocab_dict), encoding="utf-8")
        for name, file in ARRAY_FILES.items():
            np.save(target / file, np.asarray(self.scores[name]))
        if self.nonoccurrence_array is not None:
            np.save(target / NONOCCURRENCE_FILE, self.nonoccurrence_array)
