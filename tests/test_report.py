"""The HTML evaluation report: self-contained, escaped, with plots, metrics and thumbnails."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from vitrina.encoders.config import EncoderConfig
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.evaluate.evaluation import evaluate_image, evaluate_text, read_qrels
from vitrina.engine.build.indexing import build_index
from vitrina.engine.evaluate.report import format_metric, worst_queries, write_report
from vitrina.engine.query.search import SearchSession
from tests.helpers import demo_catalog, demo_rows, write_csv

EVIL = "<script>alert('x')</script> Evil & Co"
TYPES = ("Watches", "Wallets", "Sports Shoes")


class Page(HTMLParser):
    """Collects tags, their attributes and the text of an HTML page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        if not self.tags or self.tags[-1][0] != "style":  # visible text only
            self.text.append(data)

    def images(self, kind: str) -> list[Image.Image]:
        prefix = f"data:image/{kind};base64,"
        srcs = [a["src"] for t, a in self.tags if t == "img" and (a.get("src") or "").startswith(prefix)]
        return [Image.open(io.BytesIO(base64.b64decode(s[len(prefix):]))) for s in srcs]


@pytest.fixture(scope="module")
def index(tmp_path_factory, tiny_bert_dir, tiny_resnet_weights) -> tuple[Path, list[dict], Path]:
    """(index dir, catalog rows, qrels): 12 demo products, one with a hostile title, one without its image file."""
    root = tmp_path_factory.mktemp("report")
    rows = demo_rows()
    picked: list[dict] = []
    for kind in TYPES:
        picked += [dict(r) for r in rows if r["articleType"] == kind][:4]
    catalog = demo_catalog(root, picked)
    picked[0]["title"] = EVIL
    picked[-1]["image"] = "images/does-not-exist.jpg"
    write_csv(catalog, picked)
    config = VitrinaConfig(text_model=str(tiny_bert_dir), image_model=f"resnet18={tiny_resnet_weights}",
                           encoders=EncoderConfig(device="cpu", batch_size=16), progress=False)
    report = build_index(catalog, root / "idx", config)
    assert len(report.image_failures) == 1
    qrels = []
    for n, kind in enumerate(TYPES):
        for r in picked:
            grade = 2 if r["articleType"] == kind else (1 if r["baseColour"] == "Black" else None)
            if grade is not None:
                qrels.append({"query_id": f"q{n}", "query": f"{kind.lower()} for men", "product_id": r["id"],
                              "relevance": grade})
    qrels.append({"query_id": "q9", "query": "steel strap watch", "product_id": "not-in-index", "relevance": 2})
    return root / "idx", picked, write_csv(root / "qrels.csv", qrels)


@pytest.fixture(scope="module")
def session(index) -> SearchSession:
    return SearchSession(index[0], VitrinaConfig(encoders=EncoderConfig(device="cpu"), progress=False))


@pytest.fixture(scope="module")
def text_report(index, session, tmp_path_factory) -> tuple[Path, object]:
    evaluation = evaluate_text(session, read_qrels(index[2]), k=5, progress=False)
    out = write_report(evaluation, session, tmp_path_factory.mktemp("out") / "new" / "text.html")
    return out, evaluation


def test_text_report_is_self_contained_and_complete(text_report, index):
    out, evaluation = text_report
    assert out.is_file() and not list(out.parent.glob("*.tmp"))  # written atomically, no temp left
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert [m.name for m in evaluation.methods] == ["lexical", "dense", "hybrid"]
    body = " ".join(page.text)
    assert "text" in body and str(evaluation.index) in body and "not in the index" in body  # header and notes
    for method in evaluation.methods:
        assert f"<th>{method.label}</th>" in text
        for metric in evaluation.metrics:
            assert format_metric(method.mean(metric)) in text
    assert all(f"<th>{m}</th>" in text for m in evaluation.metrics)
    best_ndcg = max(m.mean(f"ndcg@{evaluation.k}") for m in evaluation.methods)
    assert f"<b>{format_metric(best_ndcg)}</b>" in text  # the best value of each column in bold
    assert text.count('<div class="query">') == len(evaluation.queries) == 4  # worst=10, but only 4 queries
    assert "<i>not in the index</i>" in text  # q9's judged product is missing from the catalog
    plots = page.images("png")
    assert len(plots) >= 2 and all(p.width >= 300 and p.height >= 200 for p in plots)
    thumbs = page.images("jpeg")
    assert thumbs and all(max(t.size) <= 96 for t in thumbs)
    assert "unjudged" in body and "hybrid better on" in body
    # nothing external: no scripts, style sheets, or network sources
    assert not [t for t, _ in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    assert all(not (a.get("src") or "").startswith(("http:", "https:", "//")) for _, a in page.tags)
    assert all((a.get("src") or "data:").startswith("data:") for t, a in page.tags if t == "img")
    # the hostile title is shown as text, never as markup
    assert "<script>" not in text and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Evil &amp; Co" in text


def test_worst_queries_are_lowest_ndcg_first_ties_by_id(text_report):
    _, evaluation = text_report
    hybrid = evaluation.method("hybrid")
    order = worst_queries(evaluation, hybrid, 10)
    key = [(hybrid.per_query[q][f"ndcg@{evaluation.k}"], q) for q in order]
    assert key == sorted(key) and set(order) == set(evaluation.queries)
    assert worst_queries(evaluation, hybrid, 2) == order[:2]


def test_image_report_shows_query_thumbnails(index, session, tmp_path):
    evaluation = evaluate_image(session, "articleType", k=3, progress=False)
    out = write_report(evaluation, session, tmp_path / "image.html", worst=3)
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert len(page.images("png")) >= 2 and "Distribution of per-query ndcg@3" in text
    blocks = text.count('<div class="query">')
    assert blocks == 3
    # each query block holds the query product's thumbnail and one per result (3 each)
    assert len(page.images("jpeg")) >= blocks * 2
    assert "unjudged" not in " ".join(page.text)  # image labels judge every product


def test_url_and_broken_images_get_no_thumbnail_and_are_never_fetched(index, session, tmp_path, monkeypatch):
    evaluation = evaluate_image(session, "articleType", k=3, progress=False)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    url = "https://example.invalid/a.jpg"
    sources = {pid: (url if n % 2 else str(broken)) for n, pid in enumerate(session.products.ids)}
    monkeypatch.setattr(session, "image_source", lambda pid: sources[pid])
    text = write_report(evaluation, session, tmp_path / "urls.html").read_text(encoding="utf-8")
    page = Page(text)
    assert not page.images("jpeg")
    assert all((a.get("src") or "data:").startswith("data:") for _, a in page.tags)
    assert 'href="https://example.invalid/a.jpg"' in text  # a link at most


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(text_report, tmp_path):
    out, _ = text_report
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--window-size=1300,2000", f"--screenshot={shot}", out.resolve().as_uri()],
            check=True, capture_output=True, timeout=120,
        )
    with Image.open(shot) as img:
        assert img.size == (1300, 2000)
        colours = img.convert("RGB").resize((130, 200)).getcolors(maxcolors=1_000_000)
    assert len(colours) > 50  # text, table borders, plots and thumbnails: far from one flat colour
