"""Answering queries over an index directory: search sessions and recommendations."""
