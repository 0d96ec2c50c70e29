"""The colour descriptor of a product photo: background left out, same colour close, other colour far."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from vitrina.engine.learn.colour import (
    DESCRIPTOR_DIM,
    ColourConfig,
    colour_descriptor,
    colour_descriptors,
)


def product_photo(colour: tuple[int, int, int], box: tuple[int, int, int, int] = (40, 30, 180, 200)) -> Image.Image:
    """A 224x224 shop photo: a coloured product shape on white."""
    image = Image.new("RGB", (224, 224), (255, 255, 255))
    ImageDraw.Draw(image).rectangle(box, fill=colour)
    return image


def test_the_white_background_is_left_out():
    small_red = colour_descriptor(product_photo((200, 20, 30), box=(90, 90, 130, 140)))
    all_red = colour_descriptor(Image.new("RGB", (224, 224), (200, 20, 30)))
    assert small_red.shape == (DESCRIPTOR_DIM,)
    with_background = colour_descriptor(product_photo((200, 20, 30), box=(90, 90, 130, 140)), ColourConfig(background=1.0))
    assert float(small_red @ all_red) > 0.8
    assert float(with_background @ all_red) < 0.3
    assert np.linalg.norm(small_red) == pytest.approx(1.0, abs=1e-5)


def test_same_colour_is_closer_than_another_colour():
    red, other_red, blue, black = (colour_descriptor(product_photo(c)) for c in
                                  ((210, 30, 40), (235, 50, 45), (30, 60, 200), (15, 15, 15)))
    assert red @ other_red > 0.5 > max(red @ blue, red @ black, blue @ black)


def test_an_all_white_photo_and_an_empty_batch():
    white = colour_descriptor(Image.new("RGB", (64, 64), (255, 255, 255)))
    assert np.isfinite(white).all() and np.linalg.norm(white) == pytest.approx(1.0, abs=1e-5)
    assert colour_descriptors([]).shape == (0, DESCRIPTOR_DIM)
    with pytest.raises(ValueError):
        ColourConfig(size=2)
