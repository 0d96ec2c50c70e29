"""Offline relevance evaluation: judged queries, relevance metrics and HTML reports."""
