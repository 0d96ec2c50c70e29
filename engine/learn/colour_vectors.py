"""The colour descriptors an index stores, read by product row (for training heads and for joining to image vectors).

An index built with images holds a "colour" space: one descriptor (encoders.colour) per photo, on the same
product rows as the "image" space. Indexes built before it have none (`vitrina reindex` adds it).
"""

from __future__ import annotations

import numpy as np

from vitrina.encoders.colour import COLOUR_SPACE, ColourConfig
from vitrina.engine.errors import QueryError
from vitrina.engine.learn.captions import NeighbourCaptions
from vitrina.engine.learn.fusion import ColourJoin
from vitrina.index import IndexDirectory


def stored_colour(directory: IndexDirectory) -> tuple[np.ndarray, np.ndarray, ColourConfig] | None:
    """(descriptors (m, dim) float32, their product rows (m,), the config they were made with), or None when
    the index has no colour space or one made by a descriptor version this Vitrina does not compute."""
    space, info = directory.spaces.get(COLOUR_SPACE), directory.manifest.spaces.get(COLOUR_SPACE)
    if space is None or info is None:
        return None
    try:
        config = ColourConfig.from_name(info.encoder)
    except ValueError:
        return None
    return np.asarray(space.vectors, dtype=np.float32), np.asarray(space.rows, dtype=np.int64), config


def colour_of_rows(directory: IndexDirectory, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The stored descriptors of product `rows` ((len(rows), dim), zeros where a row has none) and a mask of
    the rows that have one; QueryError when the index stores no colour descriptors."""
    stored = stored_colour(directory)
    if stored is None:
        raise QueryError(f"{directory.path} stores no colour descriptors (indexed before they were, or by another "
                         "version); run `vitrina reindex` to add them")
    vectors, found = directory.spaces[COLOUR_SPACE].vectors_of_rows(np.asarray(rows, dtype=np.int64))
    out = np.zeros((len(rows), stored[0].shape[1]), dtype=np.float32)
    out[found] = vectors
    return out, found


def image_head_inputs(directory: IndexDirectory, colour: ColourJoin | None, cnn: np.ndarray,
                      rows: np.ndarray, captions: NeighbourCaptions | None = None) -> np.ndarray | None:
    """The image-head inputs of stored photos: CNN vectors `cnn` of product `rows`, joined with their stored
    descriptors when `colour` asks for them and with their neighbour captions when `captions` are given; None
    when colour is asked for and the index stores none of that kind."""
    inputs = np.asarray(cnn, dtype=np.float32)
    if colour is not None:
        stored = stored_colour(directory)
        if stored is None or stored[2].name != colour.descriptor:
            return None
        descriptors, _ = colour_of_rows(directory, rows)
        inputs = colour.join(cnn, descriptors)
    if captions is not None:
        ids = directory.products.ids
        inputs = captions.join(inputs, cnn, [ids[int(r)] for r in rows])
    return inputs


def colour_join(directory: IndexDirectory, scale: float) -> ColourJoin | None:
    """The join `vitrina train` uses at `scale`: descriptors at scale x the mean norm of the index's CNN image
    vectors; None when scale is 0 or the index stores no image vectors or no descriptors."""
    stored, image = stored_colour(directory), directory.spaces.get("image")
    if scale <= 0 or stored is None or image is None or not len(image.rows):
        return None
    norm = float(np.linalg.norm(np.asarray(image.vectors, dtype=np.float32), axis=1).mean())
    return ColourJoin(stored[2].name, scale * norm)
