"""The fusion layer: projection heads into one shared space, and one fused vector per product.

Each modality (text embedding, image embedding, behaviour vector) has a linear head (W, b) into a
shared space of dimension `dim`, learned by `engine.shared_space.train_heads`. Heads run in numpy, so
searching a trained index needs no PyTorch.

A product's shared vector is the unit-length weighted sum of its projected modalities; a product
missing one (no image, no events) is blended from the others (the weights renormalise; never NaN).
Its fused vector joins two blocks: sqrt(text_share) x its raw text embedding and
sqrt(1 - text_share) x its shared vector. A text query gets the same two blocks, so its inner
product with a product is text_share x the text cosine + (1 - text_share) x the shared-space cosine:
fused search keeps what the text space knew and adds what images and shoppers say. An image query
has only the shared block.

Heads trained with a colour descriptor (`ColourJoin`, `vitrina train --colour`) take [CNN vector,
factor x the photo's colour descriptor] as the image input, for stored photos (the index's "colour"
space) and uploaded ones alike (`photo_inputs`); the model records which descriptor and factor. Heads trained
with neighbour captions (`engine.learn.captions`, `vitrina train --captions`) also take each photo's caption,
made from the anchor products saved with the heads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vitrina.encoders.base import l2_normalize
from vitrina.encoders.colour import ColourConfig, colour_descriptors
from vitrina.engine.learn.attributes import AttributeHeads
from vitrina.engine.learn.captions import NeighbourCaptions
from vitrina.engine.errors import QueryError

FUSION_DIR = "fusion"
STATE_FILE = "fusion.json"
HEADS_FILE = "heads.npz"
FUSED_SPACE = "fused"
SHARED_IMAGE_SPACE = "shared-image"  # image vectors projected into the shared space (text -> image search)

Inputs = dict[str, tuple[np.ndarray, np.ndarray]]  # modality -> (vectors, product rows)


@dataclass(frozen=True)
class FusionWeights:
    """How much each projected modality counts in a product's fused vector (chosen on fashion, RESULTS.md)."""

    text: float = 1.0
    image: float = 1.0
    behaviour: float = 0.5

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value < float("inf"):
                raise ValueError(f"fusion weight {name} must be a finite number >= 0, got {value}")

    def of(self, modality: str) -> float:
        return float(getattr(self, modality))


@dataclass(frozen=True)
class ColourJoin:
    """The colour descriptor joined to image vectors before the image head: [cnn, factor x descriptor]."""

    descriptor: str  # ColourConfig.name of the descriptors the head was trained on
    factor: float  # `TrainConfig.colour` x the mean norm of the training CNN vectors

    @property
    def config(self) -> ColourConfig:
        try:
            return ColourConfig.from_name(self.descriptor)
        except ValueError as exc:
            raise QueryError(f"the shared-space heads need a colour descriptor this Vitrina does not compute ({exc}); "
                             "run `vitrina reindex` and `vitrina train` again") from None

    def join(self, cnn: np.ndarray, colour: np.ndarray) -> np.ndarray:
        """Image-head inputs: each CNN vector with its scaled colour descriptor."""
        return np.hstack([np.asarray(cnn, np.float32), self.factor * np.asarray(colour, np.float32)]).astype(np.float32)


@dataclass
class FusionModel:
    """Projection heads, what each expects as input, and the fusion weights."""

    dim: int
    heads: dict[str, tuple[np.ndarray, np.ndarray]]  # modality -> (W: (input dim, dim), b: (dim,))
    inputs: dict[str, str]  # modality -> the encoder name (or behaviour fit id) the head was trained on
    weights: FusionWeights = field(default_factory=FusionWeights)
    training: dict = field(default_factory=dict)  # what `vitrina train` reports: epochs, seconds, split, scores
    text_share: float = 0.8  # weight of the raw text cosine in fused scores (the rest: the shared space)
    colour: ColourJoin | None = None  # the image head's inputs carry a colour descriptor (None: CNN vectors only)
    attributes: AttributeHeads | None = None  # `vitrina train --attributes` (engine.learn.attributes), else None
    captions: NeighbourCaptions | None = None  # the image head also reads neighbour captions (engine.learn.captions)

    @property
    def text_dim(self) -> int:
        return int(self.head("text")[0].shape[0])

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha1()
        for modality in sorted(self.heads):
            w, b = self.heads[modality]
            digest.update(modality.encode() + np.ascontiguousarray(w).tobytes() + np.ascontiguousarray(b).tobytes())
        if self.colour is not None:  # heads without colour keep the fingerprint they always had
            digest.update(f"{self.colour.descriptor}|{self.colour.factor!r}".encode())
        if self.captions is not None:
            digest.update(f"captions@{self.captions.fingerprint}".encode())
        return digest.hexdigest()[:12]

    @property
    def name(self) -> str:
        """The name recorded as the encoder of the shared-space vectors in the manifest."""
        return f"fusion@{self.fingerprint}"

    def head(self, modality: str) -> tuple[np.ndarray, np.ndarray]:
        if modality not in self.heads:
            raise QueryError(f"the shared space has no {modality} head (it has: {', '.join(self.heads)}); "
                             f"run `vitrina train` on an index with {modality} vectors")
        return self.heads[modality]

    def project(self, modality: str, vectors: np.ndarray) -> np.ndarray:
        """Unit-length shared-space vectors of one modality's embeddings."""
        w, b = self.head(modality)
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != w.shape[0]:
            raise QueryError(f"the {modality} head takes {w.shape[0]}-d vectors, got shape {vectors.shape}")
        return l2_normalize(vectors @ w + b)

    def image_inputs(self, cnn: np.ndarray, colour: np.ndarray | None, product_ids: list[str] | None = None) -> np.ndarray:
        """What the image head takes for these CNN vectors: themselves, joined with their colour descriptors and
        their neighbour captions where the heads use them (`product_ids`: whose photos they are, if catalog ones)."""
        inputs = np.asarray(cnn, dtype=np.float32)
        if self.colour is not None:
            if colour is None:
                raise QueryError("the shared-space image head was trained with colour descriptors and none were given; "
                                 "run `vitrina reindex` to store them (or `vitrina train --colour 0`)")
            inputs = self.colour.join(cnn, colour)
        return inputs if self.captions is None else self.captions.join(inputs, cnn, product_ids)

    def photo_inputs(self, cnn: np.ndarray, photos: list) -> np.ndarray:
        """The image head's inputs for query photos (PIL images) whose CNN vectors are `cnn`."""
        colour = None if self.colour is None else colour_descriptors(list(photos), self.colour.config)
        return self.image_inputs(cnn, colour)

    @property
    def heldout_share(self) -> float:
        """The share of products `vitrina train --heldout` kept out of training (by `heldout_bucket`)."""
        return float(self.training.get("settings", {}).get("heldout", 0.0))

    def fused_query(self, modality: str, vectors: np.ndarray) -> np.ndarray:
        """Query vectors for the fused space: text gets both blocks, other modalities the shared block only."""
        shared = np.sqrt(1.0 - self.text_share) * self.project(modality, vectors)
        if modality != "text":
            return np.hstack([np.zeros((len(shared), self.text_dim), np.float32), shared])
        return l2_normalize(np.hstack([np.sqrt(self.text_share) * l2_normalize(vectors), shared]))

    def usable(self, modality: str, source: str) -> bool:
        """Whether this model's head for `modality` fits vectors made by `source` (encoder name or fit id)."""
        return modality in self.heads and self.inputs.get(modality) == source

    def fuse(self, n_products: int, projected: Inputs) -> np.ndarray:
        """(n_products, dim) fused vectors from each modality's projected (vectors, rows)."""
        total = np.zeros((n_products, self.dim), dtype=np.float32)
        for modality, (vectors, rows) in projected.items():
            total[rows] += self.weights.of(modality) * vectors
        return l2_normalize(total)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {f"{m}.{part}": a for m, (w, b) in self.heads.items() for part, a in (("w", w), ("b", b))}
        np.savez(directory / HEADS_FILE, **arrays)
        state = {"dim": self.dim, "inputs": self.inputs, "weights": asdict(self.weights), "training": self.training,
                 "text_share": self.text_share, "fingerprint": self.fingerprint,
                 "colour": asdict(self.colour) if self.colour is not None else None}
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2, default=str) + "\n")
        if self.attributes is not None:
            self.attributes.save(directory)
        if self.captions is not None:
            self.captions.save(directory)

    @classmethod
    def load(cls, directory: Path) -> "FusionModel":
        if not (directory / STATE_FILE).is_file():
            raise QueryError(f"{directory.parent} has no trained shared space; run `vitrina train {directory.parent}`")
        try:
            state = json.loads((directory / STATE_FILE).read_text())
            arrays = np.load(directory / HEADS_FILE)
            heads = {m: (arrays[f"{m}.w"], arrays[f"{m}.b"]) for m in state["inputs"]}
            colour = state.get("colour")
            model = cls(int(state["dim"]), heads, dict(state["inputs"]), FusionWeights(**state["weights"]),
                        state.get("training", {}), float(state.get("text_share", 0.8)),
                        ColourJoin(str(colour["descriptor"]), float(colour["factor"])) if colour else None,
                        AttributeHeads.load(directory), NeighbourCaptions.load(directory))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise QueryError(f"the shared space in {directory} is damaged ({exc}); run `vitrina train` again") from None
        for modality, (w, b) in heads.items():
            if w.ndim != 2 or w.shape[1] != model.dim or b.shape != (model.dim,):
                raise QueryError(f"the {modality} head in {directory} is damaged; run `vitrina train` again")
        if state.get("fingerprint") not in (None, model.fingerprint):
            raise QueryError(f"the heads in {directory} do not match their record; run `vitrina train` again")
        return model


def shared_vectors(model: FusionModel, n_products: int, inputs: Inputs) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The vectors an index stores for the shared space: projected images and the fused product vectors.

    `inputs` holds the raw (vectors, rows) of the modalities to use; fused covers every product with
    at least one of them.
    """
    projected = {m: (model.project(m, v), r) for m, (v, r) in inputs.items() if len(r)}
    shared = model.fuse(n_products, projected)
    text = np.zeros((n_products, model.text_dim), dtype=np.float32)
    if "text" in inputs:
        vectors, rows = inputs["text"]
        text[rows] = l2_normalize(vectors)
    fused = l2_normalize(np.hstack([np.sqrt(model.text_share) * text, np.sqrt(1.0 - model.text_share) * shared]))
    covered = np.zeros(n_products, dtype=bool)
    for _, rows in projected.values():
        covered[rows] = True
    out = {FUSED_SPACE: (fused[covered], np.flatnonzero(covered).astype(np.int64))}
    if "image" in projected:
        out[SHARED_IMAGE_SPACE] = projected["image"]
    return out
