"""The colour descriptor (encoders/colour.py) on synthetic product shots and the demo catalog's photos."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from vitrina.encoders.colour import (
    ColourConfig,
    colour_descriptor,
    colour_descriptors,
    fuse,
    srgb_to_lab,
)

from tests.helpers import DEMO_DATA, demo_rows


def product_shot(colour: str, size: int = 224, background: str = "white") -> Image.Image:
    """A garment-like block of one colour in the middle of a studio backdrop."""
    img = Image.new("RGB", (size, size), background)
    ImageDraw.Draw(img).rectangle((size // 4, size // 6, 3 * size // 4, 5 * size // 6), fill=colour)
    return img


def test_lab_of_reference_colours() -> None:
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0]]))
    assert np.allclose(lab[0], [100, 0, 0], atol=0.01)
    assert np.allclose(lab[1], [0, 0, 0], atol=0.01)
    assert np.allclose(lab[2], [53.24, 80.09, 67.20], atol=0.05)


@pytest.mark.parametrize("config", [ColourConfig(), ColourConfig(soft=False), ColourConfig(bins=(3, 6, 6), sigma=None)])
def test_unit_length_and_size(config: ColourConfig) -> None:
    d = colour_descriptor(product_shot("navy"), config)
    assert d.shape == (config.dim,) and d.dtype == np.float32
    assert np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)
    assert (d >= 0).all()


def test_same_colour_closer_than_other_colours_whatever_the_backdrop_share() -> None:
    red, small_red = colour_descriptor(product_shot("red")), colour_descriptor(product_shot("red", size=100))
    darker_red = colour_descriptor(product_shot((200, 20, 30)))
    blue, black = colour_descriptor(product_shot("blue")), colour_descriptor(product_shot("black"))
    assert red @ small_red > 0.95  # only the resized edges differ
    assert red @ darker_red > red @ blue and red @ darker_red > red @ black
    assert red @ blue < 0.2 and red @ black < 0.2


def test_background_is_left_out_but_white_products_still_count() -> None:
    with_backdrop = colour_descriptor(product_shot("green"))
    filled = colour_descriptor(Image.new("RGB", (224, 224), "green"))
    assert with_backdrop @ filled > 0.95  # the white backdrop adds nothing (edges blend a little)
    white = colour_descriptor(Image.new("RGB", (224, 224), "white"))  # all backdrop: falls back to every pixel
    assert np.isfinite(white).all() and np.linalg.norm(white) == pytest.approx(1.0, abs=1e-5)
    kept = colour_descriptor(product_shot("green"), ColourConfig(background=None))
    assert kept @ white > with_backdrop @ white  # without the mask the backdrop weighs in


def test_demo_photos_batch_and_fusion() -> None:
    photos = [Image.open(DEMO_DATA / r["image"]) for r in demo_rows()[:6]]
    batch = colour_descriptors(photos)
    assert batch.shape == (6, ColourConfig().dim)
    assert np.allclose(batch[2], colour_descriptor(photos[2]))
    assert colour_descriptors([]).shape == (0, ColourConfig().dim)
    cnn = np.eye(6, 8, dtype=np.float32)
    fused = fuse(cnn, batch, 0.5)
    assert np.allclose(fused @ fused.T, cnn @ cnn.T + 0.5 * (batch @ batch.T), atol=1e-5)


# from the shared-space work's descriptor (HSV), kept for the one descriptor left


def test_a_small_product_on_white_matches_the_same_colour_filling_the_photo() -> None:
    small_red = colour_descriptor(product_shot((200, 20, 30)).resize((224, 224)).crop((0, 0, 224, 224)))
    box = Image.new("RGB", (224, 224), "white")
    ImageDraw.Draw(box).rectangle((90, 90, 130, 140), fill=(200, 20, 30))
    tiny, all_red = colour_descriptor(box), colour_descriptor(Image.new("RGB", (224, 224), (200, 20, 30)))
    with_background = colour_descriptor(box, ColourConfig(background=None))
    assert float(tiny @ all_red) > 0.8 and float(small_red @ all_red) > 0.8
    assert float(with_background @ all_red) < 0.5


def test_reds_are_close_and_far_from_blue_and_black() -> None:
    red, other_red, blue, black = (colour_descriptor(product_shot(c)) for c in
                                  ((210, 30, 40), (235, 50, 45), (30, 60, 200), (15, 15, 15)))
    assert red @ other_red > 0.5 > max(red @ blue, red @ black, blue @ black)


def test_bad_configs_are_refused_and_names_round_trip() -> None:
    for bad in ({"size": 2}, {"bins": (4, 0, 8)}, {"background": 300}, {"sigma": 0.0}):
        with pytest.raises(ValueError):
            ColourConfig(**bad)
    config = ColourConfig(bins=(3, 6, 6), sigma=None)
    assert ColourConfig.from_name(config.name) == config and config.name != ColourConfig().name
    assert ColourConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError):
        ColourConfig.from_name("colour-hsv-v1:{}")
