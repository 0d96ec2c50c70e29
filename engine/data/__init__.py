"""Readers of the shop's files: catalogs, shopper events, and stable id-hash splits."""
