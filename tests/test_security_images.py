"""Adversarial checks of images and URLs (issue 15, items 1-4 and the BytesIO wording of 11): catalog images
confined to their folders, the image endpoint serving only images, bounded memory for odd shapes, capped
and regular local files, and image URLs that cannot reach the local network. All traffic stays on 127/8."""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import ImageLoadError
from vitrina.encoders.image_io import decode_image, load_image, read_image_bytes
from vitrina.encoders.image_policy import ImageConfig
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.build.indexing import build_index
from vitrina.index import IndexManifest
from vitrina.serving.app import create_app
from vitrina.serving.config import ServingConfig
from tests.helpers import REPO, demo_catalog, demo_rows, run_cli, write_csv

pytestmark = pytest.mark.slow
KEY = "test-key-0123456789"
LOOPBACK_OK = ImageConfig(allow_private_urls=True)


def png(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def tiny_config(text_dir: Path, resnet: Path, images: ImageConfig | None = None) -> VitrinaConfig:
    return VitrinaConfig(text_model=str(text_dir), image_model=f"resnet18={resnet}", progress=False,
                         encoders=EncoderConfig(backend="torch"), images=images or ImageConfig())


@contextlib.contextmanager
def serving_files(directory: Path, host: str = "127.0.0.1", redirects: dict[str, str] | None = None) -> Iterator[str]:
    """A loopback HTTP server over `directory` on `host` (paths in `redirects` answer 302); yields its base URL."""
    moved = redirects or {}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path in moved:
                self.send_response(302)
                self.send_header("Location", moved[self.path])
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------- a catalog that attacks its indexer and server

@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_bert_dir, tiny_resnet_weights):
    """(catalog dir, outside dir, index dir, report, rows): demo products plus rows whose images point outside
    the catalog's folder, at devices, FIFOs, folders, text files and loopback URLs."""
    base = tmp_path_factory.mktemp("hostile")
    shop, outside = base / "shop", base / "outside"
    rows = [dict(r) for r in demo_rows()[:4]]
    demo_catalog(shop, rows)
    outside.mkdir()
    (outside / "real.jpg").write_bytes(jpeg())
    (shop / "images" / "link.jpg").symlink_to(outside / "real.jpg")
    os.mkfifo(shop / "images" / "pipe.jpg")
    (shop / "images" / "notes.jpg").write_text("not a picture")
    (shop / "images" / "disguised.jpg").write_bytes(png((30, 40)))
    rows[0]["id"] = "sku 7#1"  # an id that must be percent-encoded in URLs
    template = {k: "" for k in rows[0]}
    hostile_images = {
        "up": "../" * 12 + "etc/passwd", "abs": "/etc/passwd", "link": "images/link.jpg",
        "outside": str(outside / "real.jpg"), "zero": "/dev/zero", "fifo": "images/pipe.jpg", "dir": "images",
        "notes": "images/notes.jpg", "disguised": "images/disguised.jpg", "loop": "http://127.0.0.1:9/a.jpg",
    }
    for pid, image in hostile_images.items():
        rows.append({**template, "id": pid, "title": f"hostile product {pid}", "articleType": "Watches", "image": image})
    catalog = write_csv(shop / "products.csv", rows)
    started = time.monotonic()
    report = build_index(catalog, base / "idx", tiny_config(tiny_bert_dir, tiny_resnet_weights))
    assert time.monotonic() - started < 120  # the FIFO did not hang the indexer
    return shop, outside, base / "idx", report, rows


def test_images_outside_the_catalog_folder_devices_fifos_and_loopback_urls_are_image_failures(hostile):
    _, _, idx, report, rows = hostile
    why = dict(report.image_failures)
    for pid in ("up", "abs", "link", "outside"):
        assert "outside the catalog's folder and the allowed image roots" in why[pid], why[pid]
    assert "refused image /dev/zero: it lies outside" in why["zero"]
    assert "not a regular file" in why["fifo"] and "not a regular file" in why["dir"]
    assert "not a readable image" in why["notes"]
    assert "refused http://127.0.0.1:9/a.jpg: 127.0.0.1 resolves to a loopback address" in why["loop"]
    assert "disguised" not in why and rows[0]["id"] not in why  # real images (a PNG named .jpg too) are indexed
    manifest = IndexManifest.load(idx)
    assert manifest.product_count == len(rows) and manifest.spaces["image"].count == 5
    assert manifest.catalog["image_roots"] == [str(hostile[0].resolve())]


@pytest.fixture(scope="module")
def client(hostile, tiny_bert_dir, tiny_resnet_weights):
    app = create_app(hostile[2], tiny_config(tiny_bert_dir, tiny_resnet_weights), ServingConfig(api_key=KEY))
    with TestClient(app) as c:
        for _ in range(600):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.1)
        yield c


def test_the_image_endpoint_serves_only_images_inside_the_recorded_folders(client, hostile):
    for pid in ("up", "abs", "link", "outside", "zero", "fifo", "dir", "notes"):
        response = client.get(f"/products/{pid}/image")
        assert response.status_code in (403, 404), (pid, response.status_code)
        assert "root:" not in response.text and "/etc" not in response.text and str(hostile[0]) not in response.text
    assert client.get("/products/up/image").status_code == 403
    good = client.get(f"/products/{quote('sku 7#1', safe='')}/image")
    assert good.status_code == 200 and good.headers["content-type"] == "image/jpeg"
    assert good.headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(good.content)).format == "JPEG"
    disguised = client.get("/products/disguised/image")  # the type of the decoded format, not of the name
    assert disguised.status_code == 200 and disguised.headers["content-type"] == "image/png"
    # an image URL the indexer refused is no redirect to the server's own network either
    loop = client.get("/products/loop/image", follow_redirects=False)
    assert loop.status_code == 404 and "location" not in loop.headers and "public address" in loop.json()["detail"]


def test_the_image_endpoint_checks_again_at_serve_time(client, hostile, tmp_path):
    shop = hostile[0]
    target = shop / "images" / "disguised.jpg"
    saved = target.read_bytes()
    try:
        target.unlink()
        target.symlink_to(Path("/etc/passwd"))  # swapped for a link after indexing
        response = client.get("/products/disguised/image")
        assert response.status_code == 403 and "outside the index's image folders" in response.json()["detail"]
        target.unlink()
        target.write_text("root:x:0:0:root:/root:/bin/bash\n")  # or for a non-image inside the folder
        assert client.get("/products/disguised/image").status_code == 403
    finally:
        target.unlink()
        target.write_bytes(saved)
    assert client.get("/products/disguised/image").status_code == 200


def test_responses_carry_image_urls_not_server_paths(client, hostile):
    rows = hostile[4]
    hits = client.get("/search", params={"q": "hostile product", "k": 20}).json()["results"]
    assert len(hits) == len(rows)
    for hit in hits:
        if hit["id"] == "loop":
            assert hit["image"] == "http://127.0.0.1:9/a.jpg"  # http(s) URLs stay as they are
        else:
            assert hit["image"] == f"/products/{quote(hit['id'], safe='')}/image"
    one = client.get(f"/products/{quote('sku 7#1', safe='')}").json()
    assert one["image"] == "/products/sku%207%231/image"
    assert client.get(one["image"]).status_code == 200
    similar = client.get(f"/products/{quote('sku 7#1', safe='')}/similar", params={"k": 3}).json()["results"]
    assert all(h["image"].startswith("/products/") for h in similar)


def test_older_indexes_fall_back_to_the_catalog_folder_else_refuse(hostile, tiny_bert_dir, tiny_resnet_weights, tmp_path):
    config = tiny_config(tiny_bert_dir, tiny_resnet_weights)
    for name, drop in (("old", ("image_roots",)), ("older", ("image_roots", "source"))):
        copy = tmp_path / name
        shutil.copytree(hostile[2], copy)
        data = json.loads((copy / "manifest.json").read_text())
        for key in drop:
            data["catalog"].pop(key)
        if name == "older":
            data["catalog"]["source"] = ""
        (copy / "manifest.json").write_text(json.dumps(data))
        with TestClient(create_app(copy, config, ServingConfig(api_key=KEY))) as c:
            for _ in range(600):
                if c.get("/readyz").status_code == 200:
                    break
                time.sleep(0.1)
            status = c.get("/products/disguised/image").status_code
            assert c.get("/products/up/image").status_code in (403, 404)
        assert status == (200 if name == "old" else 403)


# ---------------------------------------------------------------- --image-root on index, reindex and upsert

def test_image_root_flag_admits_a_folder_on_index_reindex_and_upsert(hostile, tiny_bert_dir, tiny_resnet_weights, tmp_path):
    outside = hostile[1]
    rows = [dict(r) for r in demo_rows()[:3]]
    catalog = demo_catalog(tmp_path / "cat", rows)
    rows[1]["image"] = str(outside / "real.jpg")
    write_csv(catalog, rows)
    flags = ("--text-model", tiny_bert_dir, "--image-model", f"resnet18={tiny_resnet_weights}", "--backend", "torch", "-q")
    code, out, err = run_cli("index", catalog, "--out", tmp_path / "a", *flags)
    assert code == 0 and "images failed: 1" in out and "outside the catalog's folder" in out, out + err
    code, out, err = run_cli("index", catalog, "--out", tmp_path / "b", "--image-root", outside, *flags)
    assert code == 0 and "images failed" not in out, out + err
    assert IndexManifest.load(tmp_path / "b").catalog["image_roots"] == [str((tmp_path / "cat").resolve()), str(outside.resolve())]

    code, out, err = run_cli("reindex", catalog, "--out", tmp_path / "root", "--json", *flags)
    assert code == 0 and json.loads(out)["images_failed"] == 1, err
    code, out, err = run_cli("reindex", catalog, "--out", tmp_path / "root", "--json", "--image-root", outside, *flags)
    assert code == 0 and json.loads(out)["images_failed"] == 0, err

    (tmp_path / "extra").mkdir()
    extra = write_csv(tmp_path / "extra" / "new.csv", [{**rows[0], "id": "new-1", "image": str(outside / "real.jpg")}])
    upsert_flags = ("--backend", "torch", "-q", "--json")
    code, out, err = run_cli("upsert", tmp_path / "root", extra, *upsert_flags)
    assert code == 0 and json.loads(out)["images_failed"] == 1, err
    code, out, err = run_cli("upsert", tmp_path / "root", extra, "--image-root", outside, *upsert_flags)
    assert code == 0 and json.loads(out)["images_failed"] == 0, err


@pytest.mark.parametrize("flag, value, message", [
    ("--image-root", "/no/such/folder", "--image-root /no/such/folder: not a folder"),
    ("--allow-url-network", "10.0.0.0/33", "--allow-url-network '10.0.0.0/33': not a network"),
])
def test_bad_policy_flags_are_clear_cli_errors(tmp_path, flag, value, message):
    catalog = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "shoe"}])
    code, _, err = run_cli("index", catalog, "--out", tmp_path / "idx", flag, value, "--image-model", "none", "-q")
    assert code == 1 and err.startswith("vitrina: error: ") and message in err and "Traceback" not in err


# ---------------------------------------------------------------- item 2: bounded work for any shape

def test_an_absurd_aspect_ratio_upload_is_a_422(client):
    response = client.post("/search/image", files={"file": ("strip.png", png((1, 20000)), "image/png")})
    assert response.status_code == 422
    assert "1x20000 pixels, an aspect ratio beyond the limit of 1:20" in response.json()["detail"]
    wide = client.post("/search/image", files={"file": ("wide.png", png((400, 21)), "image/png")})
    assert wide.status_code == 200  # 1:19 is a photo
    strict = ServingConfig(max_image_aspect=10)
    with pytest.raises(ImageLoadError, match="aspect ratio beyond the limit of 1:10"):
        decode_image(png((400, 21)), "wide", strict.max_image_pixels, strict.max_image_aspect)


PEAK_SCRIPT = """
import resource, sys
from PIL import Image
from vitrina.encoders import EncoderConfig, load_image_encoder
encoder = load_image_encoder(sys.argv[1], EncoderConfig(backend="torch", device="cpu"))
encoder.encode([Image.new("RGB", (300, 200))])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
encoder.encode([Image.new("RGB", (1, 20000)), Image.new("RGB", (20000, 1000))])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def test_encoding_a_long_strip_takes_memory_bounded_by_the_model_input(tiny_resnet_weights):
    """Peak RSS (a fresh process) grows by far less than the 1.2 GB a 20000x20000 canvas would take."""
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, f"resnet18={tiny_resnet_weights}"], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr
    grown_mib = int(done.stdout.strip().splitlines()[-1])
    assert grown_mib < 300, f"peak RSS grew by {grown_mib} MiB"


# ---------------------------------------------------------------- item 3: local files capped and regular

def test_local_files_are_capped_and_must_be_regular(tmp_path):
    (tmp_path / "big.jpg").write_bytes(jpeg((200, 200)) + b"\0" * 5000)
    with pytest.raises(ImageLoadError, match=r"big.jpg is larger than 0.00\d+ MiB"):
        read_image_bytes(str(tmp_path / "big.jpg"), 5, ImageConfig(max_bytes=4000))
    assert read_image_bytes(str(tmp_path / "big.jpg"), 5, ImageConfig(max_bytes=100_000))
    os.mkfifo(tmp_path / "pipe.jpg")
    outcome: list[BaseException] = []
    reader = threading.Thread(target=lambda: _capture(outcome, read_image_bytes, str(tmp_path / "pipe.jpg"), 5), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading a FIFO hung"
    assert isinstance(outcome[0], ImageLoadError) and "not a regular file" in str(outcome[0])
    for special in ("/dev/zero", str(tmp_path)):
        with pytest.raises(ImageLoadError, match="not a regular file"):
            read_image_bytes(special, 5)
    with pytest.raises(ImageLoadError, match="refused image /dev/zero: it lies outside"):
        read_image_bytes("/dev/zero", 5, ImageConfig().for_catalog(tmp_path))


def _capture(into: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
        into.append(exc)


# ---------------------------------------------------------------- item 4: no SSRF at ingestion

def test_loopback_urls_are_refused_unless_allowed(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg())
    with serving_files(tmp_path) as base:
        port = base.rsplit(":", 1)[1]
        for url in (f"{base}/a.jpg", f"http://localhost:{port}/a.jpg", f"http://[::ffff:127.0.0.1]:{port}/a.jpg"):
            with pytest.raises(ImageLoadError, match="refused http://.*: .* resolves to a loopback address"):
                load_image(url, timeout_s=5)
        assert load_image(f"{base}/a.jpg", timeout_s=5, policy=LOOPBACK_OK).size == (40, 30)
    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/a.jpg", "http://[fe80::1]/a.jpg",
                "http://224.0.0.1/a.jpg", "http://0.0.0.0/a.jpg", "http://192.168.1.1/a.jpg"):
        with pytest.raises(ImageLoadError, match="refused http://.*: .* resolves to a (link-local|private|multicast|unspecified) address"):
            read_image_bytes(url, 5)


def test_download_errors_do_not_echo_socket_details():
    with pytest.raises(ImageLoadError) as caught:
        read_image_bytes("http://127.0.0.1:9/a.jpg", 5, LOOPBACK_OK)  # nothing listens on the discard port
    assert str(caught.value) == "could not download http://127.0.0.1:9/a.jpg"


def test_every_redirect_hop_is_checked(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg())
    cdn_only = ImageConfig.from_flags(networks=["127.0.0.2/32"])
    with serving_files(tmp_path, "127.0.0.1") as inner:
        with serving_files(tmp_path, "127.0.0.2", {"/moved.jpg": f"{inner}/a.jpg", "/here.jpg": "/a.jpg"}) as cdn:
            assert load_image(f"{cdn}/a.jpg", timeout_s=5, policy=cdn_only).size == (40, 30)
            assert load_image(f"{cdn}/here.jpg", timeout_s=5, policy=cdn_only).size == (40, 30)  # a hop on the CDN
            with pytest.raises(ImageLoadError) as caught:
                load_image(f"{cdn}/moved.jpg", timeout_s=5, policy=cdn_only)
            assert str(caught.value).startswith(f"refused {inner}/a.jpg: 127.0.0.1 resolves to a loopback address")
            assert str(caught.value).endswith(f", redirected from {cdn}/moved.jpg")
            assert load_image(f"{cdn}/moved.jpg", timeout_s=5, policy=LOOPBACK_OK).size == (40, 30)
            with pytest.raises(ImageLoadError, match="refused"):
                load_image(f"{cdn}/a.jpg", timeout_s=5)  # the default allows no 127/8 at all


def test_the_connection_goes_to_the_address_that_was_checked(tmp_path, monkeypatch):
    """A name only this resolver knows: the download works only if nothing looks the name up a second time."""
    (tmp_path / "a.jpg").write_bytes(jpeg())
    real, lookups = socket.getaddrinfo, []

    def resolver(host, port, *args, **kwargs):
        if host != "cdn.shop.test":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port))]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with serving_files(tmp_path, "127.0.0.2") as cdn:
        url = cdn.replace("127.0.0.2", "cdn.shop.test") + "/a.jpg"
        with pytest.raises(ImageLoadError, match="cdn.shop.test resolves to a loopback address"):
            load_image(url, timeout_s=5)
        assert load_image(url, timeout_s=5, policy=ImageConfig.from_flags(networks=["127.0.0.2/32"])).size == (40, 30)
    assert lookups == ["cdn.shop.test", "cdn.shop.test"]  # one lookup per download, none by the connection


def test_index_refuses_loopback_urls_by_default_and_takes_them_with_the_flags(tmp_path, tiny_bert_dir, tiny_resnet_weights):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.jpg").write_bytes(jpeg())
    flags = ("--text-model", tiny_bert_dir, "--image-model", f"resnet18={tiny_resnet_weights}", "--backend", "torch", "-q")
    with serving_files(tmp_path / "pics", "127.0.0.2") as cdn:
        catalog = write_csv(tmp_path / "c.csv", [{"id": "1", "title": "red shoe", "image": f"{cdn}/a.jpg"},
                                                 {"id": "2", "title": "blue shoe", "image": f"{cdn}/a.jpg"}])
        code, out, err = run_cli("index", catalog, "--out", tmp_path / "a", *flags)
        assert code == 0 and "images failed: 2" in out and "resolves to a loopback address" in out, out + err
        for extra in (("--allow-private-urls",), ("--allow-url-network", "127.0.0.2/32")):
            code, out, err = run_cli("index", catalog, "--out", tmp_path / "b", *extra, *flags)
            assert code == 0 and "images failed" not in out and "image: 2 vectors" in out, out + err
            # the server redirects to image URLs under the rules the index was built with, and only those
            for index, redirects in ((tmp_path / "a", False), (tmp_path / "b", True)):
                with TestClient(create_app(index, serving=ServingConfig(api_key="k" * 16))) as c:
                    while c.get("/readyz").status_code != 200:
                        time.sleep(0.1)
                    answer = c.get("/products/1/image", follow_redirects=False)
                assert (answer.status_code == 307) is redirects, (extra, index, answer.status_code)
                assert (answer.headers.get("location") == f"{cdn}/a.jpg") is redirects


# ---------------------------------------------------------------- item 11: no object reprs in errors

def test_decode_errors_do_not_show_object_reprs():
    with pytest.raises(ImageLoadError) as caught:
        decode_image(b"hello, not an image", "the upload 'a.txt'", 1_000_000)
    assert "BytesIO" not in str(caught.value) and " at 0x" not in str(caught.value)
    assert str(caught.value).startswith("the upload 'a.txt' is not a readable image: not a JPEG, PNG")
