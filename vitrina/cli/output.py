"""Rendering results for people (rich tables) and for scripts (JSON)."""

from __future__ import annotations

import json
import sys
from typing import Any, Sequence, TextIO

from rich.console import Console
from rich.table import Table

from vitrina.engine.query.search import SearchHit

MAX_EXTRA_COLUMNS = 3
MAX_CELL = 60
FACET_ROWS = 10  # values shown per facet column in the table


def hits_json(hits: Sequence[SearchHit]) -> list[dict[str, Any]]:
    return [h.to_json() for h in hits]


def print_json(obj: dict[str, Any], out: TextIO | None = None) -> None:
    (out or sys.stdout).write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")


def _short(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def results_table(title: str, hits: Sequence[SearchHit], text_fields: Sequence[str], hide: Sequence[str] = (),
                  first: int = 1) -> Table:
    """A table of ranked hits: id, score, the main text field and a few short metadata columns (ranks from `first`)."""
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("id")
    table.add_column("score", justify="right")
    main = next((f for f in text_fields), None)
    extra: list[str] = []
    for hit in hits:
        for key, value in hit.metadata.items():
            if key in extra or key == main or key in text_fields or key in hide or len(extra) >= MAX_EXTRA_COLUMNS:
                continue
            if value is not None and len(str(value)) <= 24:
                extra.append(key)
    if main:
        table.add_column(main)
    for key in extra:
        table.add_column(key)
    grouped = any(hit.variants is not None for hit in hits)  # an index with product groups
    if grouped:
        table.add_column("variants")
    for rank, hit in enumerate(hits, start=first):
        cells = [str(rank), hit.id, f"{hit.score:.3f}"]
        if main:
            cells.append(_short(hit.metadata.get(main)))
        cells.extend(_short(hit.metadata.get(key)) for key in extra)
        if grouped:
            cells.append(_variants_cell(hit.variants))
        table.add_row(*cells)
    return table


def _variants_cell(variants: Sequence[str]) -> str:
    """'+N: first, second…' for a hit's variants (nothing for none)."""
    if not variants:
        return ""
    return f"+{len(variants)}: {', '.join(variants[:2])}" + ("…" if len(variants) > 2 else "")


def facets_table(hits: Any, shown: int = FACET_ROWS) -> Table:
    """The facets of an answer (`Hits` with facets): each column's most frequent values with their counts,
    then the price range and the size of the matched set."""
    table = Table(title=f"Facets over {hits.total} matched products", title_justify="left")
    table.add_column("facet")
    table.add_column("value")
    table.add_column("count", justify="right")
    for column, counts in (hits.facets or {}).items():
        for i, (value, count) in enumerate(list(counts.items())[:shown]):
            table.add_row(column if i == 0 else "", _short(value), str(count))
        if len(counts) > shown:
            table.add_row("", f"(+{len(counts) - shown} more)", "")
    if hits.price_range is not None:
        table.add_row("price", f"{hits.price_range[0]:g} to {hits.price_range[1]:g}", "")
    return table


def console() -> Console:
    return Console(width=max(Console().width, 110))


def evaluation_table(evaluation) -> Table:
    """Methods as rows, metrics as columns; the best value of each metric in bold."""
    title = f"{evaluation.kind} evaluation: {len(evaluation.queries)} queries, {evaluation.index}"
    table = Table(title=title, title_justify="left")
    table.add_column("method")
    for name in evaluation.metrics:
        table.add_column(name, justify="right")
    table.add_column("seconds", justify="right")
    best = {name: max(m.mean(name) for m in evaluation.methods) for name in evaluation.metrics}
    for method in evaluation.methods:
        cells = []
        for name in evaluation.metrics:
            value = method.mean(name)
            text = f"{value:.4f}"
            cells.append(f"[bold]{text}[/bold]" if len(evaluation.methods) > 1 and value == best[name] else text)
        table.add_row(method.label, *cells, f"{method.seconds:.1f}")
    return table
