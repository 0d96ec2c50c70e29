"""Image loading: files and http(s) URLs, with clear errors for bad images."""

from __future__ import annotations

import functools
import http.server
import io
import threading

import pytest
from PIL import Image

from vitrina.encoders.errors import ImageLoadError
from vitrina.encoders.image_io import fit_square, load_image, load_images
from vitrina.encoders.image_policy import ImageConfig

LOOPBACK_OK = ImageConfig(allow_private_urls=True)  # the test server listens on 127.0.0.1


def jpeg_bytes(size=(30, 20), colour=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture()
def served(tmp_path):
    """A loopback HTTP server over tmp_path; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_load_from_file_and_url(tmp_path, served):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    from_file = load_image(str(tmp_path / "a.jpg"))
    from_url = load_image(f"{served}/a.jpg", timeout_s=5, policy=LOOPBACK_OK)
    assert from_file.mode == from_url.mode == "RGB" and from_file.size == from_url.size == (30, 20)
    with pytest.raises(ImageLoadError, match="could not download .*missing.jpg"):
        load_image(f"{served}/missing.jpg", timeout_s=5, policy=LOOPBACK_OK)


def test_bad_images_raise_clear_errors(tmp_path):
    with pytest.raises(ImageLoadError, match="image file not found"):
        load_image(str(tmp_path / "nope.jpg"))
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageLoadError, match="text.jpg is not a readable image"):
        load_image(str(tmp_path / "text.jpg"))
    data = jpeg_bytes((200, 200))
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="cut.jpg is not a readable image"):
        load_image(str(tmp_path / "cut.jpg"))
    (tmp_path / "big.jpg").write_bytes(jpeg_bytes((300, 300)))
    with pytest.raises(ImageLoadError, match="300x300 pixels, more than the limit of 10,000"):
        load_image(str(tmp_path / "big.jpg"), max_pixels=10_000)


def test_load_images_keeps_order_and_errors_in_place(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(colour=(0, 0, 255)))
    results = load_images([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), str(tmp_path / "a.jpg")])
    assert isinstance(results[0], Image.Image) and isinstance(results[2], Image.Image)
    assert isinstance(results[1], ImageLoadError) and "b.jpg" in str(results[1])


def test_fit_square_keeps_the_whole_product_centred():
    padded = fit_square(Image.new("RGB", (20, 40), (0, 0, 0)), 40)
    assert padded.size == (40, 40)
    assert padded.getpixel((0, 20)) == (255, 255, 255) and padded.getpixel((20, 20)) == (0, 0, 0)
    small = fit_square(Image.new("RGB", (20, 40), (0, 0, 0)), 10)
    assert small.size == (10, 10) and small.getpixel((0, 5)) == (255, 255, 255) and small.getpixel((5, 5)) == (0, 0, 0)
