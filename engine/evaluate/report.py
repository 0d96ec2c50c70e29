"""A self-contained HTML report of an evaluation run: metrics table, plots and the worst queries.

Everything is embedded (plots as base64 PNG, thumbnails as base64 JPEG), so the file can be mailed
or archived on its own: it references no external file, script, style sheet or network address.
Catalog text is always HTML-escaped. Image URLs are never fetched; such products get a small link.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image

from vitrina.engine.evaluate.evaluation import DEPTH, Evaluation, MethodResult
from vitrina.engine.query.search import SearchSession

THUMB_PX = 96
JUDGED_SHOWN = 5
CURVE_KS = sorted({int(round(k)) for k in np.logspace(0, np.log10(DEPTH), 40)})  # 1..100, log-spaced
STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;max-width:1240px;color:#222}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0} th,td{border:1px solid #ddd;padding:4px 8px;vertical-align:middle}
th{background:#f4f4f4;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta td:first-child{font-weight:600;background:#fafafa}
.plots{display:flex;flex-wrap:wrap;gap:16px} figure{margin:0} figcaption{color:#555;font-size:.9em;max-width:640px}
.query{border:1px solid #ddd;border-radius:6px;padding:8px 16px;margin:16px 0}
.query h3{margin:6px 0} .judged{font-size:.92em} .judged li{margin:2px 0}
tr.hit{background:#e8f6e8} .unjudged{color:#999} img.thumb{display:block;max-width:96px;max-height:96px}
.notes li{color:#555}
"""


def format_metric(value: float) -> str:
    """How metric values appear in the report (4 decimals, like the rounded evaluation summary)."""
    return f"{value:.4f}"


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _new_axes():
    """A figure's axes drawn by the Agg canvas (pyplot and its global backend are never touched)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise RuntimeError("the HTML report needs matplotlib: pip install 'matplotlib>=3.8'") from exc
    fig = Figure(figsize=(6.2, 4))
    FigureCanvasAgg(fig)
    return fig.add_subplot()


def _figure_png(ax) -> str:
    """The figure of `ax` as an <img> tag holding a base64 PNG."""
    fig = ax.figure
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


class _Products:
    """Titles, judged grades and thumbnails of catalog products (thumbnails cached per product)."""

    def __init__(self, session: SearchSession) -> None:
        self.session = session
        fields = session.manifest.catalog.get("text_fields") or []
        self.text_field: str | None = fields[0] if fields else None
        self._thumbs: dict[str, str] = {}

    def text(self, pid: str) -> str:
        products = self.session.products
        if pid not in products or not self.text_field:
            return ""
        value = products.metadata(products.row_of(pid)).get(self.text_field)
        return "" if value is None else str(value)

    def describe(self, pid: str) -> str:
        """The product's escaped main text, or a note that the index does not hold it."""
        return _esc(self.text(pid)) if pid in self.session.products else "<i>not in the index</i>"

    def thumbnail(self, pid: str) -> str:
        """An <img> with a base64 JPEG, a small link for URL images, or '' (no or unreadable image)."""
        if pid not in self._thumbs:
            self._thumbs[pid] = self._make_thumbnail(pid)
        return self._thumbs[pid]

    def _make_thumbnail(self, pid: str) -> str:
        try:
            source = self.session.image_source(pid) if pid in self.session.products else None
        except Exception:  # a broken manifest or row must not sink the report
            return ""
        if not source:
            return ""
        if source.startswith(("http://", "https://")):
            return f'<a class="imglink" href="{_esc(source)}" rel="noreferrer">image</a>'
        try:
            with Image.open(source) as img:
                img.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))  # fast JPEG decode at reduced size
                img = img.convert("RGB")
                img.thumbnail((THUMB_PX, THUMB_PX))
                buf = io.BytesIO()
                img.save(buf, format="JPEG", quality=80)
        except Exception:  # missing, unreadable, truncated, decompression bomb...
            return ""
        data = base64.b64encode(buf.getvalue()).decode("ascii")
        return f'<img class="thumb" alt="{_esc(pid)}" src="data:image/jpeg;base64,{data}">'


def _header(ev: Evaluation) -> str:
    rows = [
        ("kind", ev.kind), ("index", ev.index), ("queries", len(ev.queries)), ("k", ev.k),
        ("min relevance", ev.min_relevance), ("methods", ", ".join(m.label for m in ev.methods)),
        ("date", datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")),
    ]
    body = "".join(f"<tr><td>{_esc(name)}</td><td>{_esc(value)}</td></tr>" for name, value in rows)
    notes = "".join(f"<li>{_esc(note)}</li>" for note in ev.notes)
    return (f"<h1>Vitrina evaluation: {_esc(ev.kind)}</h1><table class=\"meta\">{body}</table>"
            + (f'<ul class="notes">{notes}</ul>' if notes else ""))


def metrics_table(ev: Evaluation) -> str:
    """One row per method, one column per metric plus seconds; the best value of each column in bold."""
    columns = {m: [format_metric(r.mean(m)) for r in ev.methods] for m in ev.metrics}
    columns["seconds"] = [f"{r.seconds:.2f}" for r in ev.methods]
    best = {m: (max if m != "seconds" else min)(vals, key=float) for m, vals in columns.items() if vals}
    head = "".join(f"<th>{_esc(m)}</th>" for m in columns)
    rows = []
    for i, result in enumerate(ev.methods):
        cells = []
        for m, values in columns.items():
            bold = len(ev.methods) > 1 and values[i] == best[m]
            cells.append(f'<td class="num">{f"<b>{values[i]}</b>" if bold else values[i]}</td>')
        rows.append(f"<tr><th>{_esc(result.label)}</th>{''.join(cells)}</tr>")
    return f"<table class=\"metrics\"><tr><th>method</th>{head}</tr>{''.join(rows)}</table>"


def recall_plot(ev: Evaluation) -> str:
    """Mean recall@k against k (log scale), one line per method."""
    ax = _new_axes()
    for result in ev.methods:
        ax.plot(CURVE_KS, ev.recall_curve(result.name, CURVE_KS), marker=".", label=result.label)
    ax.set_xscale("log")
    ax.set_xlim(1, DEPTH)
    ax.set_xticks([1, 2, 5, 10, 20, 50, 100], labels=["1", "2", "5", "10", "20", "50", "100"])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("k")
    ax.set_ylabel("mean recall@k")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    relevant = f"grade &ge; {ev.min_relevance:g}" if ev.min_relevance > 0 else "grade &gt; 0"
    caption = f"Mean recall@k for k = 1 to {DEPTH} (relevant: {relevant})."
    return f"<figure>{_figure_png(ax)}<figcaption>{caption}</figcaption></figure>"


def ndcg_plot(ev: Evaluation) -> str:
    """Per-query nDCG@k differences hybrid minus lexical, or the first method's nDCG@k."""
    metric = f"ndcg@{ev.k}"
    names = {r.name for r in ev.methods}
    ax = _new_axes()
    if {"hybrid", "lexical"} <= names:
        hybrid, lexical = ev.method("hybrid").per_query, ev.method("lexical").per_query
        diffs = np.array([hybrid[q][metric] - lexical[q][metric] for q in hybrid if q in lexical])
        better, worse = int(np.sum(diffs > 1e-9)), int(np.sum(diffs < -1e-9))
        ax.hist(diffs, bins=np.linspace(-1.025, 1.025, 42), color="#4c72b0", edgecolor="white")  # one bin centred on 0
        ax.axvline(0, color="black", linewidth=1)
        ax.set_xlabel(f"{metric}: hybrid minus lexical")
        caption = (f"Per-query {metric} of hybrid minus BM25: hybrid better on {better}, worse on {worse}, "
                   f"equal on {len(diffs) - better - worse} queries.")
    else:
        first = ev.methods[0]
        values = [row[metric] for row in first.per_query.values()]
        ax.hist(values, bins=np.linspace(0, 1, 21), color="#4c72b0", edgecolor="white")
        ax.set_xlabel(f"{metric} ({first.label})")
        caption = f"Distribution of per-query {metric} over {len(values)} queries ({_esc(first.label)})."
    ax.set_ylabel("queries")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, axis="y", alpha=0.3)
    return f"<figure>{_figure_png(ax)}<figcaption>{caption}</figcaption></figure>"


def primary_method(ev: Evaluation) -> MethodResult:
    """hybrid if present, else the first method."""
    return next((r for r in ev.methods if r.name == "hybrid"), ev.methods[0])


def worst_queries(ev: Evaluation, method: MethodResult, n: int) -> list[str]:
    """The n query ids with the lowest nDCG@k for `method` (ties by query id)."""
    metric = f"ndcg@{ev.k}"
    return sorted(method.per_query, key=lambda q: (method.per_query[q][metric], q))[: max(n, 0)]


def _grade(ev: Evaluation, qid: str, pid: str) -> str:
    """A result's judged grade as shown. Text qrels are sparse; image labels judge every product."""
    grade = ev.judgements[qid].get(pid)
    if grade is None:
        return '<span class="unjudged">unjudged</span>' if ev.kind == "text" else "0"
    return f"{grade:g}"


def _query_block(ev: Evaluation, method: MethodResult, qid: str, products: _Products) -> str:
    """One worst query: what was asked, its best judged products, and the method's top k."""
    score = method.per_query[qid][f"ndcg@{ev.k}"]
    if ev.queries_are_products:
        title = _esc(products.text(qid)) or "(query product)"
        asked = products.thumbnail(qid)
    else:
        title, asked = _esc(ev.queries[qid]), ""
    judged = {p: g for p, g in ev.judgements[qid].items() if not (ev.queries_are_products and p == qid)}
    top = sorted(judged.items(), key=lambda item: (-item[1], item[0]))[:JUDGED_SHOWN]
    items = "".join(f"<li><b>{g:g}</b> {_esc(p)}: {products.describe(p)}</li>" for p, g in top)
    relevant = ev.relevant(qid)
    rows = []
    for rank, pid in enumerate(method.rankings.get(qid, [])[: ev.k], start=1):
        rows.append(
            f'<tr{" class=hit" if pid in relevant else ""}><td class="num">{rank}</td>'
            f"<td>{products.thumbnail(pid)}</td><td>{_esc(pid)}</td><td>{_esc(products.text(pid))}</td>"
            f'<td class="num">{_grade(ev, qid, pid)}</td></tr>'
        )
    field = _esc(products.text_field or "text")
    results = (f"<table><tr><th>rank</th><th>image</th><th>id</th><th>{field}</th><th>relevance</th></tr>"
               f"{''.join(rows)}</table>") if rows else "<p>no results</p>"
    return (f'<div class="query"><h3>{_esc(qid)}: {title}</h3>{asked}'
            f"<p>{_esc(method.label)} nDCG@{ev.k} = {format_metric(score)}; {len(judged)} judged products, "
            f"the best {len(top)}:</p><ul class=\"judged\">{items}</ul>{results}</div>")


def render_report(ev: Evaluation, session: SearchSession, worst: int = 10) -> str:
    """The whole report as one HTML string."""
    parts = [_header(ev), "<h2>Metrics</h2>", metrics_table(ev)]
    if ev.methods:
        parts += ['<h2>Plots</h2><div class="plots">', recall_plot(ev), ndcg_plot(ev), "</div>"]
        method = primary_method(ev)
        qids = worst_queries(ev, method, worst)
        products = _Products(session)
        parts.append(f"<h2>The {len(qids)} worst queries for {_esc(method.label)} (by nDCG@{ev.k})</h2>")
        parts += [_query_block(ev, method, q, products) for q in qids]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Vitrina evaluation: {_esc(ev.kind)}</title><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}</body></html>\n")


def write_report(evaluation: Evaluation, session: SearchSession, out: str | Path, worst: int = 10) -> Path:
    """Write a self-contained HTML report (plots and thumbnails embedded as data URIs) and return its path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(evaluation, session, worst)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
