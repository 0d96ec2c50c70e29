"""Answering queries over an index directory.

search (SearchSession: encoders, retrieval, hits), compose (the one search composition: plan, then run),
filters (`where` / `price` values and their text syntax), personalise (re-ranking for a shopper),
hits (SearchHit, query cleaning), recommend (products for a shopper).
"""
