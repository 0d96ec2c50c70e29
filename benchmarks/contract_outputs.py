r"""Record the CLI's and the HTTP API's outputs on the bundled demo catalog, to compare two code versions byte for byte.

Usage
-----
  python benchmarks/contract_outputs.py record --vitrina "COMMAND PREFIX" --out DIR [--env KEY=VAL ...]
        [--catalog CSV] [--keep-tmp]
  python benchmarks/contract_outputs.py compare OLD_DIR NEW_DIR [--strict]

`--vitrina` is shlex-split and every case appends its arguments to it, e.g.
  --vitrina "env PYTHONPATH=OLD_CHECKOUT .venv/bin/python -m engine.cli"   (an old checkout, before `vitrina`)
  --vitrina ".venv/bin/vitrina"                                            (this checkout)
`--catalog` (default: this repository's engine/demo_data/products.csv) is the input of both runs: it and the
`images/` folder beside it are copied into a fresh temporary directory, which is the working directory of
every command; every input file a case needs is derived from it there, deterministically.

`record` writes one file per case into DIR: `NNN-name.txt` (numbered in run order) with the command line
(the prefix shown as `vitrina`) or the HTTP request, the exit code (or HTTP status and a few headers), the
normalised stdout and the normalised stderr (or the normalised response body). Cases run in a fixed order,
and later cases see the state earlier ones left (events added, versions published, heads trained), exactly as
a user would. The script needs httpx: run it with the project's virtual environment's python.
`compare` prints a unified diff per differing case and the summary line `N cases, M identical, K differ`;
it exits 1 when a case differs, except cases marked "schema" (the OpenAPI document, which is expected to gain
new optional parameters): those are diffed and named in the summary but fail only with --strict.

Environment of every command: the caller's, minus VITRINA_* variables, plus HF_HUB_OFFLINE=1, COLUMNS=200,
TERM=dumb, NO_COLOR=1 (stable rich tables, no colour codes), VITRINA_API_KEY=test-key (the server's API key;
`vitrina serve` reads it from that variable), then --env KEY=VAL overrides.

Normalisation (applied to stdout, stderr, command lines and response bodies, in this order; nothing else is
changed, in particular scores are never touched):
  1. the temporary directory (as created and as resolved)             -> <TMP>
  2. an absolute path ending in /demo_data/products.csv (only `vitrina demo` prints one: the package's own
     bundled catalog, which lives elsewhere in the old checkout and in the new package) -> <DEMO_CATALOG>
  3. index version ids, YYYYMMDDTHHMMSS.ffffffZ-xxxxxx (index/manifest.py; the names of versions of a
     versioned root and every manifest's `version`)                   -> <VERSION>
  4. the value of any JSON "index_version" key                         -> "<VERSION>"
  5. the value of any JSON "created_at" key                            -> "<TIME>"
  6. ISO 8601 date-times WITH a zone (Z or +hh:mm): the code stamps "now" with a zone, while every timestamp
     the inputs hold is naive, so inputs echoed back are kept        -> <TIME>
  7. durations: the number of a JSON "seconds" key, every number inside a JSON "seconds" object (its keys,
     the stage names, are kept), the numbers after a "seconds:" line label (`vitrina reindex`), "in N s"
     (`vitrina train`), "took N s" (a note of `vitrina eval text`) and "(text Xs, images Ys)"
     (`vitrina demo`)                                                  -> <SECONDS>
  8. the server's port in 127.0.0.1:PORT / localhost:PORT              -> <PORT>
  9. process ids in "process [1234]" (uvicorn's log lines)             -> process [<PID>]
 10. tqdm progress bars (only `vitrina demo` draws them: it has no -q, and TQDM_DISABLE does not override
     the explicit disable= of the code): each bar's run of "\r<desc>: NN%|...| n/N [...]" frames and the
     "\r<spaces>\r" that clears it -> <progress DESC>, as their number and rates depend on timing
HTTP JSON bodies are parsed and re-printed with json.dumps(indent=1, ensure_ascii=False), keeping the
server's key order, before the rules above. Binary bodies (product images, the page) are recorded as length
only; /metrics as its HELP and TYPE lines only (the samples are counters and latencies).
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

DEFAULT_CATALOG = str(Path(__file__).resolve().parents[1] / "engine" / "demo_data" / "products.csv")
API_KEY = "test-key"
BASE_ENV = {"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1", "VITRINA_API_KEY": API_KEY}
COMMAND_TIMEOUT_S = 300
SCHEMA_CASES = ("http-openapi",)  # case names (after NNN-) whose differences are "schema", not failures

# ---------------------------------------------------------------------------------------------------------------
# Normalisation


VERSION_RE = re.compile(r"\b\d{8}T\d{6}\.\d{6}Z-[0-9a-f]{6}\b")
INDEX_VERSION_RE = re.compile(r'("index_version":\s*)"[^"]*"')
CREATED_AT_RE = re.compile(r'("created_at":\s*)"[^"]*"')
ZONED_TIME_RE = re.compile(r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})")
NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
SECONDS_NUMBER_RE = re.compile(r'("seconds":\s*)' + NUMBER)
SECONDS_OBJECT_RE = re.compile(r'("seconds":\s*)(\{[^{}]*\})')
SECONDS_LINE_RE = re.compile(r"^(\s*seconds: )(.*)$", re.MULTILINE)
TRAIN_SECONDS_RE = re.compile(r"\bin \d+ s\b")
TOOK_SECONDS_RE = re.compile(r"\btook " + NUMBER + r" s\b")
PROGRESS_RE = re.compile(r"(?:\r([^\r\n:|]+): +\d+%\|[^|\r\n]*\| *\d+/\d+ \[[^\]\r\n]*\] *)+\r *\r")
DEMO_SECONDS_RE = re.compile(r"\(text " + NUMBER + r"s, images " + NUMBER + r"s\)")
DEMO_CATALOG_RE = re.compile(r"/\S*/demo_data/products\.csv")
PID_RE = re.compile(r"(process \[)\d+(\])")


class Normaliser:
    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.tmp_forms = sorted({str(tmp), str(tmp.resolve())}, key=len, reverse=True)
        self.port = port

    def __call__(self, text: str) -> str:
        for form in self.tmp_forms:  # 1
            text = text.replace(form, "<TMP>")
        text = DEMO_CATALOG_RE.sub("<DEMO_CATALOG>", text)  # 2
        text = VERSION_RE.sub("<VERSION>", text)  # 3
        text = INDEX_VERSION_RE.sub(r'\1"<VERSION>"', text)  # 4
        text = CREATED_AT_RE.sub(r'\1"<TIME>"', text)  # 5
        text = ZONED_TIME_RE.sub("<TIME>", text)  # 6
        text = SECONDS_OBJECT_RE.sub(lambda m: m.group(1) + re.sub(r"(:\s*)" + NUMBER, r"\1<SECONDS>", m.group(2)),
                                     text)  # 7
        text = SECONDS_NUMBER_RE.sub(r"\1<SECONDS>", text)
        text = SECONDS_LINE_RE.sub(lambda m: m.group(1) + re.sub(NUMBER, "<SECONDS>", m.group(2)), text)
        text = TRAIN_SECONDS_RE.sub("in <SECONDS> s", text)
        text = TOOK_SECONDS_RE.sub("took <SECONDS> s", text)
        text = DEMO_SECONDS_RE.sub("(text <SECONDS>s, images <SECONDS>s)", text)
        if self.port is not None:  # 8
            text = re.sub(rf"\b(127\.0\.0\.1|localhost):{self.port}\b", r"\1:<PORT>", text)
        text = PID_RE.sub(r"\1<PID>\2", text)  # 9
        text = PROGRESS_RE.sub(lambda m: f"<progress {m.group(1).strip()}>", text)  # 10
        return text


# ---------------------------------------------------------------------------------------------------------------
# Inputs derived from the catalog


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    fieldnames = fieldnames or list(rows[0].keys())
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    return path


class Inputs:
    """The catalog copy and every small file the cases read, all in the temporary directory."""

    def __init__(self, tmp: Path, catalog: Path) -> None:
        self.tmp = tmp
        shutil.copy(catalog, tmp / "products.csv")
        shutil.copytree(catalog.parent / "images", tmp / "images")
        with (tmp / "products.csv").open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        self.rows = rows

        def of_type(kind: str) -> list[dict]:
            return [r for r in rows if r["articleType"] == kind]

        self.watches, self.wallets = of_type("Watches"), of_type("Wallets")
        self.shoes, self.handbags = of_type("Sports Shoes"), of_type("Handbags")
        self.watch, self.shoe = self.watches[0], self.shoes[0]

        # the served catalog: the demo products with a brand (the title's first word) and a price
        shop = [{**r, "brand": r["title"].split()[0], "price": f"{int(r['id']) % 97 + 5}.99"} for r in rows]
        write_csv(tmp / "shop.csv", shop)
        self.shop = shop

        write_csv(tmp / "queries.csv", [{"query_id": "q1", "query": "wrist watch"},
                                        {"query_id": "q2", "query": "running shoes"},
                                        {"query_id": "q1", "query": "wrist watch"}])
        (tmp / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
        write_csv(tmp / "images.csv", [{"query_id": "good", "image": self.watch["image"]},
                                       {"query_id": "missing", "image": "no-such-image.jpg"},
                                       {"query_id": "broken", "image": "broken.jpg"}])

        # events: shoppers a* touch watches, b* wallets; one unknown product and one bad timestamp
        events = []
        for cluster, items in (("a", self.watches[:5]), ("b", self.wallets[:5])):
            for u in range(6):
                for j in range(3):
                    events.append({"user_id": f"{cluster}{u}", "product_id": items[(u + j) % 5]["id"],
                                   "event": ("view", "click", "cart", "purchase")[(u + j) % 4],
                                   "timestamp": f"2024-01-{1 + u + j:02d}T10:00:00"})
        events.append({"user_id": "x", "product_id": "not-a-product", "event": "view", "timestamp": "2024-01-03"})
        events.append({"user_id": "x", "product_id": self.watch["id"], "event": "view", "timestamp": "yesterday"})
        write_csv(tmp / "events.csv", events)
        write_csv(tmp / "more-events.csv", [{"user_id": "newbie", "product_id": self.wallets[6]["id"],
                                             "event": "purchase", "timestamp": "2024-02-01"}])
        self.http_events = [{k: v for k, v in e.items()} for e in events[:-2]]
        self.http_events[0]["timestamp"] = 1704103200  # epoch seconds are accepted too
        self.http_events += [{"user_id": "x", "product_id": "not-a-product", "event": "click",
                              "timestamp": "2024-01-03"},
                             {"user_id": "x", "product_id": self.watch["id"], "event": "view",
                              "timestamp": "yesterday"}]

        # qrels: each product's title is a query; the product is relevant (3), another of its type less so (1)
        qrels = []
        picked = [r for kind in (self.watches, self.wallets, self.shoes, self.handbags) for r in kind[:6]]
        for i, r in enumerate(picked):
            same = next(o for o in rows if o["articleType"] == r["articleType"] and o["id"] != r["id"])
            qrels.append({"query_id": f"q{i:03d}", "query": r["title"], "product_id": r["id"], "relevance": 3})
            qrels.append({"query_id": f"q{i:03d}", "query": r["title"], "product_id": same["id"], "relevance": 1})
        write_csv(tmp / "qrels.csv", qrels)

        # a versioned root of the first 60 products; upserts edit one, keep one and add one each time
        write_csv(tmp / "root-catalog.csv", rows[:60])
        edited = dict(rows[0], title="Waterproof hiking boots for women, brand new")
        write_csv(tmp / "changes.csv", [edited, rows[1], rows[100]])
        write_csv(tmp / "changes-2.csv", [dict(rows[2], title=rows[2]["title"] + " (new season)"), rows[101]])
        (tmp / "gone.txt").write_text(f"{rows[100]['id']}\n{rows[5]['id']}\nno-such-product\n")
        (tmp / "gone-2.txt").write_text(f"{rows[101]['id']}\n")
        self.root_ids = [r["id"] for r in rows[:60]]

        # a catalog whose second product has no id
        write_csv(tmp / "bad.csv", [rows[0], dict(rows[1], id=""), rows[2]])


# ---------------------------------------------------------------------------------------------------------------
# Cases


def cli_cases(inp: Inputs) -> list[tuple[str, list[str], dict[str, str]]]:
    """(name, arguments after the prefix, extra environment), in the order they run."""
    w, s = inp.watch["id"], inp.shoe["id"]
    watch_image = inp.watch["image"]
    off = ["--offline"]
    cases: list[tuple[str, list[str], dict[str, str]]] = [
        ("version", ["--version"], {}),
        ("index", ["index", "products.csv", "--out", "idx", "-q", *off], {}),
        ("index-no-lexical", ["index", "products.csv", "--out", "idx-nolex", "-q", "--no-lexical", *off], {}),
        ("index-shop", ["index", str(inp.tmp / "shop.csv"), "--out", "shop-idx", "-q", *off], {}),
        ("info", ["info", "idx"], {}),
        ("info-json", ["info", "idx", "--json"], {}),
        ("search-table", ["search", "idx", "leather wallet", "-k", "3", *off], {}),
        ("search-json", ["search", "idx", "leather wallet", "-k", "5", "--json", *off], {}),
        ("search-lexical",
         ["search", "idx", "black leather wallet", "--mode", "lexical", "-k", "5", "--json", *off], {}),
        ("search-dense", ["search", "idx", "black leather wallet", "--mode", "dense", "-k", "5", "--json", *off], {}),
        ("search-hybrid", ["search", "idx", "black leather wallet", "--mode", "hybrid", "-k", "5", "--json", *off], {}),
        ("search-hybrid-table", ["search", "idx", "running shoes for men", "--mode", "hybrid", "-k", "3", *off], {}),
        ("search-space-text", ["search", "idx", "analog watch", "--space", "text", "-k", "3", "--json", *off], {}),
        ("search-batch-json", ["search", "idx", "--queries", "queries.csv", "--json", "-k", "3", *off], {}),
        ("search-batch-table", ["search", "idx", "--queries", "queries.csv", "-k", "3", *off], {}),
        ("search-no-lexical-default", ["search", "idx-nolex", "leather wallet", "-k", "3", "--json", *off], {}),
        ("similar-id-table", ["similar", "idx", "--id", w, "-k", "5", *off], {}),
        ("similar-id-json", ["similar", "idx", "--id", w, "-k", "5", "--json", *off], {}),
        ("similar-id-space-text", ["similar", "idx", "--id", s, "--space", "text", "-k", "3", "--json", *off], {}),
        ("similar-image-json", ["similar", "idx", "--image", watch_image, "-k", "3", "--json", *off], {}),
        ("similar-image-table", ["similar", "idx", "--image", str(inp.tmp / watch_image), "-k", "3", *off], {}),
        ("similar-images-batch", ["similar", "idx", "--images", "images.csv", "-k", "3", "--json", *off], {}),
        ("eval-text-json", ["eval", "text", "idx", "--qrels", "qrels.csv", "--json", "-q", *off], {}),
        # errors
        ("err-k0", ["search", "idx", "shoes", "-k", "0", *off], {}),
        ("err-missing-index", ["search", str(inp.tmp / "no-such-index"), "shoes", *off], {}),
        ("err-hybrid-no-lexical", ["search", "idx-nolex", "shoes", "--mode", "hybrid", *off], {}),
        ("err-unknown-product", ["similar", "idx", "--id", "no-such-product", *off], {}),
        ("err-empty-query", ["search", "idx", "   ", *off], {}),
        ("err-no-query", ["search", "idx", *off], {}),
        ("err-space-image-no-clip", ["search", "idx", "shoes", "--space", "image", *off], {}),
        ("err-bad-mode-usage", ["search", "idx", "shoes", "--mode", "fuzzy"], {}),
        ("err-missing-image", ["similar", "idx", "--image", "no-such-image.jpg", *off], {}),
        ("err-bad-catalog", ["index", "bad.csv", "--out", "bad-idx", "-q", *off], {}),
        ("err-eval-bad-method", ["eval", "text", "idx", "--qrels", "qrels.csv", "--methods", "bm25", "-q", *off], {}),
        ("err-recommend-no-events", ["recommend", "idx", "--user", "a0"], {}),
        ("err-events-missing-file", ["events", "add", "idx", "no-such-events.csv"], {}),
        ("err-delete-not-a-root", ["delete", "idx", "--ids", "gone.txt"], {}),
        # shoppers
        ("events-add-json", ["events", "add", "idx", "events.csv", "--json", "--factors", "8"], {}),
        ("events-add-table", ["events", "add", "idx", "more-events.csv"], {}),
        ("recommend-json", ["recommend", "idx", "--user", "a0", "-k", "5", "--json"], {}),
        ("recommend-table", ["recommend", "idx", "--user", "b1", "-k", "5"], {}),
        ("recommend-unknown-user", ["recommend", "idx", "--user", "nobody", "-k", "3", "--json"], {}),
        ("search-user-json", ["search", "idx", "black", "--user", "a0", "-k", "5", "--json", *off], {}),
        ("search-user-table", ["search", "idx", "black", "--user", "b0", "-k", "5", *off], {}),
        ("search-user-unknown", ["search", "idx", "black", "--user", "stranger", "-k", "3", "--json", *off], {}),
        ("events-forget-json", ["events", "forget", "idx", "--user", "b2", "--json"], {}),
        ("events-forget-table", ["events", "forget", "idx", "--user", "nobody"], {}),
        # versioned root
        ("reindex-json",
         ["reindex", "root-catalog.csv", "--out", "root", "--shard-size", "30", "-q", "--json", *off], {}),
        ("reindex-table", ["reindex", "root-catalog.csv", "--out", "root", "--shard-size", "30", "-q", *off], {}),
        ("info-root", ["info", "root"], {}),
        ("upsert-json", ["upsert", "root", "changes.csv", "--json", "-q"], {}),
        ("upsert-table", ["upsert", "root", "changes-2.csv", "-q"], {}),
        ("delete-json", ["delete", "root", "--ids", "gone.txt", "--json", "-q"], {}),
        ("delete-table", ["delete", "root", "--ids", "gone-2.txt", "-q"], {}),
        ("search-root", ["search", "root", "waterproof hiking boots", "-k", "3", "--json", *off], {}),
        ("info-root-after-updates", ["info", "root", "--json"], {}),
        # the shared space
        ("train-json", ["train", "idx-nolex", "--epochs", "3", "--dim", "32", "-q", "--json"], {}),
        ("train-table", ["train", "idx-nolex", "--epochs", "3", "--dim", "32", "-q"], {}),
        ("search-fused", ["search", "idx-nolex", "black watch", "-k", "5", "--json", *off], {}),
        ("similar-fused", ["similar", "idx-nolex", "--id", w, "-k", "5", "--json", *off], {}),
        ("info-trained", ["info", "idx-nolex"], {}),
        # the demo (prints its own bundled catalog's path: rule 2)
        ("demo", ["demo", "--out", "demo-idx", *off], {}),
        ("demo-again", ["demo", "--out", "demo-idx", *off], {}),
    ]
    return cases


HELP_COMMANDS = [[], ["index"], ["reindex"], ["upsert"], ["delete"], ["search"], ["similar"], ["eval"],
                 ["eval", "text"], ["eval", "image"], ["eval", "cross-modal"], ["train-text"], ["train"],
                 ["export-onnx"], ["events"], ["events", "add"], ["events", "forget"], ["recommend"], ["serve"],
                 ["info"], ["demo"]]


def http_cases(inp: Inputs) -> list[dict]:
    """Requests in the order they are sent: name, method, path, params, headers, and json/files/content."""
    key = {"X-API-Key": API_KEY}
    watch, shoe = inp.watch["id"], inp.shoe["id"]
    image = (inp.tmp / inp.shoe["image"]).read_bytes()
    return [
        dict(name="healthz", method="GET", path="/healthz"),
        dict(name="readyz", method="GET", path="/readyz"),
        dict(name="search", method="GET", path="/search", params=[("q", "leather wallet"), ("k", "5")]),
        dict(name="search-default-k", method="GET", path="/search", params=[("q", "red top for women")]),
        dict(name="search-category", method="GET", path="/search",
             params=[("q", "black shoes for running"), ("k", "5"), ("category", "watches")]),
        dict(name="search-brand-price", method="GET", path="/search",
             params=[("q", "shoes"), ("k", "20"), ("brand", "Nike"), ("brand", "puma"), ("price_min", "20"),
                     ("price_max", "50")]),
        dict(name="search-space-text", method="GET", path="/search",
             params=[("q", "analog watch"), ("k", "3"), ("space", "text")]),
        dict(name="search-mode-lexical", method="GET", path="/search",
             params=[("q", "black leather wallet"), ("k", "5"), ("mode", "lexical")]),
        dict(name="search-mode-dense", method="GET", path="/search",
             params=[("q", "black leather wallet"), ("k", "5"), ("mode", "dense")]),
        dict(name="search-mode-hybrid", method="GET", path="/search",
             params=[("q", "black leather wallet"), ("k", "5"), ("mode", "hybrid")]),
        dict(name="search-with-key", method="GET", path="/search", params=[("q", "blue jeans"), ("k", "3")],
             headers=key),
        dict(name="search-image", method="POST", path="/search/image", params=[("k", "3")],
             files={"file": ("shoe.jpg", image, "image/jpeg")}),
        dict(name="search-image-category", method="POST", path="/search/image",
             params=[("k", "3"), ("category", "Wallets")], files={"file": ("shoe.jpg", image, "image/jpeg")}),
        dict(name="product", method="GET", path=f"/products/{watch}"),
        dict(name="product-similar", method="GET", path=f"/products/{shoe}/similar", params=[("k", "5")]),
        dict(name="product-similar-text", method="GET", path=f"/products/{shoe}/similar",
             params=[("k", "3"), ("space", "text"), ("price_max", "60")]),
        dict(name="product-image", method="GET", path=f"/products/{watch}/image", binary=True),
        dict(name="filters", method="GET", path="/filters"),
        dict(name="recommendations-before-events", method="GET", path="/users/a0/recommendations", headers=key),
        dict(name="events", method="POST", path="/events", json={"events": inp.http_events}, headers=key),
        dict(name="events-again-duplicates", method="POST", path="/events", json={"events": inp.http_events[:3]},
             headers=key),
        dict(name="recommendations", method="GET", path="/users/a0/recommendations", params=[("k", "5")],
             headers=key),
        dict(name="recommendations-unknown-user", method="GET", path="/users/stranger/recommendations",
             params=[("k", "3")], headers=key),
        dict(name="search-user", method="GET", path="/search", params=[("q", "black"), ("k", "5"), ("user", "b0")],
             headers=key),
        dict(name="search-user-unknown", method="GET", path="/search",
             params=[("q", "black"), ("k", "3"), ("user", "stranger")], headers=key),
        dict(name="forget-user", method="DELETE", path="/users/a0", headers=key),
        dict(name="forget-unknown-user", method="DELETE", path="/users/nobody", headers=key),
        dict(name="recommendations-after-forget", method="GET", path="/users/a0/recommendations",
             params=[("k", "3")], headers=key),
        # errors
        dict(name="err-k0", method="GET", path="/search", params=[("q", "shoes"), ("k", "0")]),
        dict(name="err-k-too-big", method="GET", path="/search", params=[("q", "shoes"), ("k", "101")]),
        dict(name="err-missing-q", method="GET", path="/search"),
        dict(name="err-empty-q", method="GET", path="/search", params=[("q", "")]),
        dict(name="err-blank-q", method="GET", path="/search", params=[("q", "  \t ")]),
        dict(name="err-price-range", method="GET", path="/search",
             params=[("q", "shoes"), ("price_min", "50"), ("price_max", "10")]),
        dict(name="err-bad-space", method="GET", path="/search", params=[("q", "shoes"), ("space", "audio")]),
        dict(name="err-space-image-no-clip", method="GET", path="/search", params=[("q", "shoes"), ("space", "image")]),
        dict(name="err-unknown-product", method="GET", path="/products/no-such-id"),
        dict(name="err-unknown-product-similar", method="GET", path="/products/no-such-id/similar"),
        dict(name="err-unknown-product-image", method="GET", path="/products/no-such-id/image"),
        dict(name="err-empty-upload", method="POST", path="/search/image",
             files={"file": ("a.jpg", b"", "image/jpeg")}),
        dict(name="err-not-an-image-upload", method="POST", path="/search/image",
             files={"file": ("a.txt", b"hello, not an image", "text/plain")}),
        dict(name="err-events-no-key", method="POST", path="/events", json={"events": inp.http_events[:1]}),
        dict(name="err-events-wrong-key", method="POST", path="/events", json={"events": inp.http_events[:1]},
             headers={"X-API-Key": "wrong-key"}),
        dict(name="err-events-bad-json", method="POST", path="/events", content=b"{not json",
             headers={"content-type": "application/json", **key}),
        dict(name="err-events-empty", method="POST", path="/events", json={"events": []}, headers=key),
        dict(name="err-recommendations-no-key", method="GET", path="/users/b0/recommendations"),
        dict(name="err-forget-wrong-key", method="DELETE", path="/users/b0",
             headers={"Authorization": "Bearer wrong-key"}),
        # other documents
        dict(name="page", method="GET", path="/", binary=True),
        dict(name="metrics-names", method="GET", path="/metrics", metrics=True),
        dict(name="openapi", method="GET", path="/openapi.json"),
    ]


KEPT_HEADERS = ("content-type", "www-authenticate", "retry-after", "location", "cache-control",
                "x-content-type-options")


# ---------------------------------------------------------------------------------------------------------------
# record


def environment(extra: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITRINA_")}
    env.update(BASE_ENV)
    for item in extra:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env {item!r}: expected KEY=VAL")
        env[name] = value
    return env


def shown(args: list[str]) -> str:
    return "vitrina " + shlex.join(args) if args else "vitrina"


def case_text(header: list[str], sections: list[tuple[str, str]]) -> str:
    out = "\n".join(header) + "\n"
    for title, body in sections:
        out += f"--- {title}\n{body}"
        if body and not body.endswith("\n"):
            out += "\n\\ no newline at end\n"
    return out


def run_cli(prefix: list[str], args: list[str], env: dict[str, str], cwd: Path) -> tuple[object, str, str]:
    """(exit code, stdout, stderr) of one command; a command past COMMAND_TIMEOUT_S is killed and says so."""
    def decode(data: bytes | None) -> str:
        return (data or b"").decode("utf-8", "backslashreplace")

    try:
        proc = subprocess.run(prefix + args, cwd=cwd, env=env, capture_output=True, timeout=COMMAND_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired as exc:
        return f"killed after {COMMAND_TIMEOUT_S} s", decode(exc.stdout), decode(exc.stderr)
    return proc.returncode, decode(proc.stdout), decode(proc.stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_record(response: httpx.Response, case: dict) -> list[tuple[str, str]]:
    head = [f"status: {response.status_code}"]
    for name in KEPT_HEADERS:
        if name in response.headers:
            head.append(f"{name}: {response.headers[name]}")
    if case.get("binary"):
        head.append(f"length: {len(response.content)}")
        return [("response", "\n".join(head) + "\n")]
    if case.get("metrics"):
        names = [line for line in response.text.splitlines() if line.startswith(("# HELP", "# TYPE"))]
        return [("response", "\n".join(head) + "\n"), ("body (HELP and TYPE lines)", "\n".join(names) + "\n")]
    try:
        body = json.dumps(response.json(), indent=1, ensure_ascii=False) + "\n"
    except ValueError:
        body = response.text
    return [("response", "\n".join(head) + "\n"), ("body", body)]


def request_line(case: dict) -> list[str]:
    url = httpx.URL(case["path"], params=case.get("params"))
    lines = [f"{case['method']} {url}"]
    for name, value in (case.get("headers") or {}).items():
        lines.append(f"> {name}: {value}")
    if "json" in case:
        lines.append("> json: " + json.dumps(case["json"], ensure_ascii=False))
    if "files" in case:
        for field, (filename, data, media) in case["files"].items():
            lines.append(f"> file {field}: {filename} ({media}, {len(data)} bytes)")
    if "content" in case:
        lines.append(f"> content: {case['content']!r}")
    return lines


def wait_ready(base: str, server: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with {server.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} not ready after {timeout_s:.0f} s")


def record(ns: argparse.Namespace) -> int:
    started = time.monotonic()
    prefix = shlex.split(ns.vitrina)
    env = environment(ns.env or [])
    catalog = Path(ns.catalog).resolve()
    out = Path(ns.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"--out {out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="vitrina-contract-"))
    written = 0
    failed = False

    try:
        inp = Inputs(tmp, catalog)
        cli, http = cli_cases(inp), http_cases(inp)
        # every case's number is fixed up front, so a case that could not run leaves a gap, not a shift
        names = ["help", *(name for name, _, _ in cli), *(f"http-{c['name']}" for c in http), "http-serve-log"]
        numbers = {name: i for i, name in enumerate(names, start=1)}
        assert len(numbers) == len(names), "case names must be unique"

        def write(name: str, text: str) -> str:
            nonlocal written
            written += 1
            filename = f"{numbers[name]:03d}-{name}.txt"
            (out / filename).write_text(text, encoding="utf-8")
            return filename

        norm = Normaliser(tmp)
        # `vitrina --help` and every command's --help, in one case
        sections = []
        for words in HELP_COMMANDS:
            code, stdout, stderr = run_cli(prefix, [*words, "--help"], env, tmp)
            sections.append((f"$ {shown([*words, '--help'])}  (exit {code})", norm(stdout) + norm(stderr)))
        write("help", case_text(["help of every command"], sections))
        for name, args, extra in cli:
            t0 = time.monotonic()
            code, stdout, stderr = run_cli(prefix, args, {**env, **extra}, tmp)
            filename = write(name, case_text([f"$ {norm(shown(args))}", f"exit: {code}"],
                                             [("stdout", norm(stdout)), ("stderr", norm(stderr))]))
            print(f"  {filename}: exit {code} ({time.monotonic() - t0:.1f} s)", file=sys.stderr)

        # the HTTP API over the shop index
        port = free_port()
        norm = Normaliser(tmp, port)
        serve_args = ["serve", "shop-idx", "--port", str(port), "--offline"]
        shown_serve = shown(serve_args).replace(f"--port {port}", "--port <PORT>")
        logs = Path(tempfile.mkdtemp(prefix="vitrina-contract-serve-"))
        with (logs / "stdout").open("wb") as so, (logs / "stderr").open("wb") as se:
            server = subprocess.Popen(prefix + serve_args, cwd=tmp, env=env, stdout=so, stderr=se)
        base = f"http://127.0.0.1:{port}"
        code: object = None
        t0 = time.monotonic()
        try:
            wait_ready(base, server)
            with httpx.Client(base_url=base, timeout=120) as client:
                for case in http:
                    kwargs = {k: case[k] for k in ("params", "headers", "json", "files", "content") if k in case}
                    response = client.request(case["method"], case["path"], **kwargs)
                    write(f"http-{case['name']}",
                          case_text([norm(line) for line in request_line(case)], [
                              (title, norm(body)) for title, body in http_record(response, case)]))
        except Exception as exc:  # the server log below says why; the missing cases show in `compare`
            failed = True
            print(f"vitrina-contract: the HTTP cases stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGINT)
                try:
                    code = server.wait(60)
                except subprocess.TimeoutExpired:
                    server.kill()
                    code = f"{server.wait()} (killed: no exit 60 s after SIGINT)"
            else:
                code = f"{server.returncode} (exited before SIGINT)"
        write("http-serve-log", case_text(
            [f"$ {norm(shown_serve)}", f"exit after SIGINT: {code}"],
            [("stdout", norm((logs / "stdout").read_text("utf-8", "backslashreplace"))),
             ("stderr", norm((logs / "stderr").read_text("utf-8", "backslashreplace")))]))
        print(f"  HTTP cases and server: {time.monotonic() - t0:.1f} s", file=sys.stderr)
        shutil.rmtree(logs, ignore_errors=True)
    finally:
        if ns.keep_tmp:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"recorded {written} cases into {out} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------------------------
# compare


def case_name(filename: str) -> str:
    stem = filename.removesuffix(".txt")
    return stem.split("-", 1)[1] if "-" in stem else stem


def compare(ns: argparse.Namespace) -> int:
    old_dir, new_dir = Path(ns.old), Path(ns.new)
    old = {p.name: p for p in old_dir.glob("*.txt")}
    new = {p.name: p for p in new_dir.glob("*.txt")}
    names = sorted(set(old) | set(new))
    identical, differ, schema = 0, [], []
    for name in names:
        a = old[name].read_text("utf-8").splitlines(keepends=True) if name in old else []
        b = new[name].read_text("utf-8").splitlines(keepends=True) if name in new else []
        if name in old and name in new and a == b:
            identical += 1
            continue
        (schema if case_name(name) in SCHEMA_CASES else differ).append(name)
        label = " [schema]" if case_name(name) in SCHEMA_CASES else ""
        where = "" if name in old and name in new else " (only in NEW)" if name in new else " (only in OLD)"
        print(f"=== {name}{label}{where}")
        sys.stdout.writelines(difflib.unified_diff(a, b, f"{old_dir / name}", f"{new_dir / name}"))
        print()
    summary = f"{len(names)} cases, {identical} identical, {len(differ) + len(schema)} differ"
    if schema:
        why = "" if ns.strict else "; not a failure without --strict"
        summary += f" ({len(schema)} schema: {', '.join(schema)}{why})"
    print(summary)
    return 1 if differ or (schema and ns.strict) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("record", help="run every case and write one file per case")
    p.add_argument("--vitrina", required=True, help="command prefix, shlex-split (e.g. '/path/.venv/bin/vitrina')")
    p.add_argument("--out", required=True, help="directory for the case files (new or empty)")
    p.add_argument("--env", action="append", metavar="KEY=VAL", help="extra environment for every command")
    p.add_argument("--catalog", default=DEFAULT_CATALOG, help=f"input catalog (default {DEFAULT_CATALOG})")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary working directory")
    p.set_defaults(func=record)
    p = sub.add_parser("compare", help="diff two recordings")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--strict", action="store_true", help="schema cases (the OpenAPI document) fail too")
    p.set_defaults(func=compare)
    ns = parser.parse_args(argv)
    return ns.func(ns)


if __name__ == "__main__":
    sys.exit(main())
