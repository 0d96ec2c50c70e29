"""`vitrina train`: learn the projection heads of the shared space on an index's cached embeddings.

The encoders stay frozen. Training reads the vectors the index already stores (text, image) and
its behaviour vectors (DIR/behaviour, from `vitrina events add`), and learns one linear head per
modality with a symmetric InfoNCE loss over in-batch negatives:
- a product's text with its own image;
- a product's behaviour vector with its text and its image;
- co-purchase: a product's fused vector with that of another product the same shopper bought.
A geometry term keeps the projected texts' cosine similarities close to the raw ones, so text
search in the shared space stays as good as in the text space it came from.

Products are split by a hash of their id (the same on every machine): `heldout` of them are never
trained on (so evaluations can be honest), `validation` of the rest pick the best epoch. The heads
are saved in DIR/fusion and the index gains two spaces: "fused" (one vector per product) and
"shared-image" (images in the shared space, for text -> image search). With `attributes` (catalog
columns such as articleType, baseColour), attribute heads are learned on the same split too
(engine.learn.attributes) and a third space, "similar", is what `similar` searches.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from vitrina.engine.learn.attributes import (
    SIMILAR_SPACE,
    AttributeConfig,
    AttributeHeads,
    check_columns,
    similar_space_vectors,
    train_attribute_heads,
)
from vitrina.engine.learn.behaviour import BehaviourModel, load_index_behaviour
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.errors import QueryError
from vitrina.encoders.colour import COLOUR_SPACE
from vitrina.engine.learn.captions import NeighbourCaptions, anchor_captions
from vitrina.engine.learn.colour_vectors import colour_join, image_head_inputs
from vitrina.engine.learn.fusion import (
    FUSED_SPACE,
    FUSION_DIR,
    SHARED_IMAGE_SPACE,
    ColourJoin,
    FusionModel,
    FusionWeights,
    Inputs,
    shared_vectors,
)
from vitrina.engine.data.splits import heldout_bucket
from vitrina.index import IndexDirectory, ProductIndex, SpaceInfo, VectorSpace
from vitrina.index.store import editing, remove_space, replace_directory, write_manifest, write_space
from vitrina.errors import Param

SHARED_SPACES = (FUSED_SPACE, SHARED_IMAGE_SPACE, SIMILAR_SPACE)
SCHEDULES = ("constant", "cosine")
COLOUR_DEFAULT = 1.0  # chosen on fashion validation products (benchmarks/RESULTS.md, issue 18)
CAPTIONS_DEFAULT = 2.0  # neighbour captions' scale, chosen on fashion validation products (RESULTS.md, issue 18)


@dataclass(frozen=True)
class TrainConfig:
    """How `vitrina train` learns the heads (defaults measured on fashion, benchmarks/RESULTS.md)."""

    dim: int = 256
    epochs: int = 15
    batch_size: int = 256
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # the learning rate over the epochs: "cosine" (annealed to 0; chosen on fashion validation), or "constant"
    weight_decay: float = 0.01
    temperature: float = 0.07  # initial; learned, like CLIP's logit scale
    heldout: float = 0.0  # share of products never trained on (by a hash of the product id)
    validation: float = 0.1  # share of the other products that picks the best epoch
    co_purchase_weight: float = 0.5
    keep_text_weight: float = 3.0  # weight of the squared change of in-batch text cosines
    seed: int = 0
    colour: float = COLOUR_DEFAULT  # the stored colour descriptor joined to the image vector at this x the mean CNN norm; 0: not
    captions: float = CAPTIONS_DEFAULT  # neighbour captions joined to the image head's input at this x the mean CNN norm; 0: not
    caption_neighbours: int = 20  # anchor photos a caption is made from
    caption_temperature: float = 0.02  # softmax temperature over their cosines
    caption_anchors: int = 20_000  # at most this many training products are anchors (a seeded sample)
    attributes: tuple[str, ...] = ()  # catalog columns to learn attribute heads for (engine.learn.attributes)
    attribute_settings: AttributeConfig = field(default_factory=AttributeConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.colour < float("inf"):
            raise QueryError("{colour} must be a finite number >= 0 (0: no colour descriptor), got {value}",
                             colour=Param("colour"), value=self.colour)
        if not 0.0 <= self.captions < float("inf"):
            raise QueryError("{captions} must be a finite number >= 0 (0: no neighbour captions), got {value}",
                             captions=Param("captions"), value=self.captions)
        if self.caption_neighbours < 1 or self.caption_anchors < 2 or not 0.0 < self.caption_temperature < float("inf"):
            raise QueryError("caption neighbours must be >= 1, caption anchors >= 2 and the caption temperature > 0")
        columns = self.attributes.split(",") if isinstance(self.attributes, str) else self.attributes
        object.__setattr__(self, "attributes", tuple(str(c).strip() for c in columns if str(c).strip()))
        if isinstance(self.attribute_settings, dict):  # read back from a saved model's training record
            known = AttributeConfig.__dataclass_fields__
            object.__setattr__(self, "attribute_settings",
                               AttributeConfig(**{k: v for k, v in self.attribute_settings.items() if k in known}))
        if len(set(self.attributes)) != len(self.attributes):
            raise QueryError("{attributes} names a column twice: {columns}", attributes=Param("attributes"),
                             columns=",".join(self.attributes))
        if self.schedule not in SCHEDULES:
            raise QueryError("{schedule} must be one of {choices}, got {value!r}", schedule=Param("schedule"),
                             choices=", ".join(SCHEDULES), value=self.schedule)
        if self.dim < 2 or self.epochs < 1 or self.batch_size < 2:
            raise QueryError("dim must be >= 2, epochs >= 1 and batch size >= 2")
        if not 0.0 <= self.heldout < 1.0 or not 0.0 <= self.validation < 1.0 or self.heldout + self.validation >= 1.0:
            raise QueryError("{heldout} ({value}) and validation ({validation}) must be shares in [0, 1) that leave "
                             "products to train on", heldout=Param("heldout"), value=self.heldout,
                             validation=self.validation)


    def split(self, product_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(held out, validation, trained on) masks of `product_ids`, by the hash of each id (`heldout_bucket`)."""
        bucket = np.array([heldout_bucket(p) for p in product_ids], dtype=np.float64)
        heldout = bucket < self.heldout
        train = bucket >= self.heldout + self.validation
        return heldout, ~heldout & ~train, train


@dataclass
class TrainReport:
    products: int
    trained_on: int
    heldout: int
    modalities: list[str]
    epochs_run: int
    best_epoch: int
    validation_recall_at_10: float | None
    losses: list[float]
    seconds: float
    dim: int = 0  # the shared space's dimension
    notes: list[str] = field(default_factory=list)  # from writing the spaces, e.g. a modality left out
    attributes: dict = field(default_factory=dict)  # the attribute heads' report (columns, accuracy, weights)


def modality_inputs(directory: IndexDirectory, behaviour: BehaviourModel | None, colour: ColourJoin | None = None,
                    captions: NeighbourCaptions | None = None) -> tuple[Inputs, dict[str, str]]:
    """(vectors, product rows) per modality, and the encoder name (or behaviour fit id) of each; with `colour`,
    the image vectors joined with their stored colour descriptors (no image input when the index has none), and
    with `captions`, with their neighbour captions."""
    inputs: Inputs = {}
    sources: dict[str, str] = {}
    for modality in ("text", "image"):
        space = directory.spaces.get(modality)
        if space is not None and len(space.rows):  # one vector per product: several images' normalised mean
            vectors, rows = space.product_vectors()
            vectors, rows = np.asarray(vectors, dtype=np.float32), np.asarray(rows, dtype=np.int64)
            if modality == "image":
                vectors = image_head_inputs(directory, colour, vectors, rows, captions)
                if vectors is None:
                    continue
            inputs[modality] = (vectors, rows)
            sources[modality] = directory.manifest.spaces[modality].encoder
    if behaviour is not None and behaviour.has_vector.any():
        rows = np.flatnonzero(behaviour.has_vector).astype(np.int64)
        inputs["behaviour"] = (behaviour.item_vectors(rows), rows)
        sources["behaviour"] = behaviour.fit_id
    return inputs, sources


def _co_purchase_partners(interactions: sp.csr_matrix, rng: np.random.Generator) -> np.ndarray:
    """One partner product per product: another product a random one of its shoppers also touched (-1: none)."""
    by_item = interactions.T.tocsr()
    partners = np.full(interactions.shape[1], -1, dtype=np.int64)
    for item in np.flatnonzero(np.diff(by_item.indptr)):
        users = by_item.indices[by_item.indptr[item] : by_item.indptr[item + 1]]
        for user in rng.permutation(users)[:5]:
            bought = interactions.indices[interactions.indptr[user] : interactions.indptr[user + 1]]
            others = bought[bought != item]
            if len(others):
                partners[item] = rng.choice(others)
                break
    return partners


def train_heads(
    inputs: Inputs, sources: dict[str, str], product_ids: list[str], settings: TrainConfig = TrainConfig(),
    interactions: sp.csr_matrix | None = None, weights: FusionWeights = FusionWeights(), progress: bool = True,
    colour: ColourJoin | None = None, captions: NeighbourCaptions | None = None,
) -> tuple[FusionModel, TrainReport]:
    """Learn one linear head per modality in `inputs` into a `settings.dim`-d shared space (`colour`, `captions`:
    what the image inputs were joined with, recorded in the model)."""
    import torch
    import torch.nn.functional as F

    if len(inputs) < 2:
        raise QueryError(f"the shared space needs two modalities to align, and this index has only "
                         f"{', '.join(inputs) or 'none'}: index a catalog with images, or add events first")
    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    n = len(product_ids)
    heldout, validation, train = settings.split(product_ids)

    tensors, present = {}, {}
    for modality, (vectors, rows) in inputs.items():
        full = np.zeros((n, vectors.shape[1]), dtype=np.float32)
        full[rows] = vectors
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        tensors[modality], present[modality] = torch.from_numpy(full), torch.from_numpy(mask)
    dim = settings.dim
    heads = torch.nn.ModuleDict({m: torch.nn.Linear(t.shape[1], dim) for m, t in tensors.items()})
    logit_scale = torch.nn.Parameter(torch.tensor(float(np.log(1.0 / settings.temperature))))
    optimiser = torch.optim.AdamW([*heads.parameters(), logit_scale], lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, settings.epochs) if settings.schedule == "cosine" else None
    partners = None
    if interactions is not None and "behaviour" in inputs and settings.co_purchase_weight > 0:
        partners = torch.from_numpy(_co_purchase_partners(interactions.tocsr(), rng))
    pairs = [(a, b) for a in ("behaviour", "text") for b in ("text", "image") if a != b and a in tensors and b in tensors]

    def project(modality: str, idx: torch.Tensor) -> torch.Tensor:
        return F.normalize(heads[modality](tensors[modality][idx]), dim=-1)

    def fused(idx: torch.Tensor) -> torch.Tensor:
        total = 0
        for modality in tensors:
            total = total + weights.of(modality) * present[modality][idx, None] * project(modality, idx)
        return F.normalize(total, dim=-1)

    def info_nce(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        logits = logit_scale.exp().clamp(max=100.0) * a @ b.T
        labels = torch.arange(len(a))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        loss = torch.zeros(())
        for a, b in pairs:
            both = idx[present[a][idx] & present[b][idx]]
            if len(both) > 1:
                loss = loss + info_nce(project(a, both), project(b, both))
        if "text" in tensors and settings.keep_text_weight > 0:
            texts = idx[present["text"][idx]]
            raw = F.normalize(tensors["text"][texts], dim=-1)
            projected = project("text", texts)
            change = projected @ projected.T - raw @ raw.T
            loss = loss + settings.keep_text_weight * (change**2).mean()
        if partners is not None:
            mine = idx[partners[idx] >= 0]
            if len(mine) > 1:
                loss = loss + settings.co_purchase_weight * info_nce(fused(mine), fused(partners[mine]))
        return loss

    query_m, target_m = ("text", "image") if "image" in tensors else (pairs[0][0], pairs[0][1])
    val_rows = np.flatnonzero(validation & present[query_m].numpy() & present[target_m].numpy())

    gallery = np.flatnonzero(present[target_m].numpy())  # every product's target vector, as search sees them
    position = {int(r): i for i, r in enumerate(gallery)}

    def validation_recall() -> float | None:
        """recall@10 of validation products' query modality against the whole target gallery."""
        if len(val_rows) < 2:
            return None
        with torch.no_grad():
            scores = project(query_m, torch.from_numpy(val_rows)) @ project(target_m, torch.from_numpy(gallery)).T
            own = scores[torch.arange(len(val_rows)), torch.tensor([position[int(r)] for r in val_rows])]
            return float(((scores > own[:, None]).sum(1) < 10).float().mean())

    train_rows = np.flatnonzero(train)
    if len(train_rows) < 2:
        raise QueryError("only {count} products left to train on; lower {heldout}", count=len(train_rows),
                         heldout=Param("heldout"))
    best = (validation_recall(), 0, copy.deepcopy(heads.state_dict()))
    losses: list[float] = []
    epochs = tqdm(range(1, settings.epochs + 1), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in epochs:
        order = rng.permutation(train_rows)
        total, steps = 0.0, 0
        for start in range(0, len(order), settings.batch_size):
            idx = torch.from_numpy(order[start : start + settings.batch_size])
            loss = batch_loss(idx)
            if not loss.requires_grad:
                continue
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total, steps = total + float(loss.detach()), steps + 1
        losses.append(round(total / max(1, steps), 4))
        if annealing is not None:
            annealing.step()
        score = validation_recall()
        epochs.set_postfix(loss=losses[-1], val=score)
        if best[0] is None or (score is not None and score > best[0]):
            best = (score, epoch, copy.deepcopy(heads.state_dict()))
    if best[0] is not None:
        heads.load_state_dict(best[2])
    arrays = {m: (head.weight.detach().numpy().T.copy(), head.bias.detach().numpy().copy()) for m, head in heads.items()}
    report = TrainReport(
        products=n, trained_on=int(train.sum()), heldout=int(heldout.sum()), modalities=list(tensors),
        epochs_run=settings.epochs, best_epoch=best[1] if best[0] is not None else settings.epochs,
        validation_recall_at_10=None if best[0] is None else round(best[0], 4), losses=losses,
        seconds=round(time.perf_counter() - started, 1), dim=dim,
    )
    stored = {name: value for name, value in asdict(report).items() if name not in ("notes", "attributes")}
    training = {"settings": asdict(settings), "report": stored}
    return FusionModel(dim, arrays, dict(sources), weights, training,
                       colour=colour if "image" in inputs else None,
                       captions=captions if "image" in inputs else None), report


def every_image_input(directory: IndexDirectory, model: FusionModel) -> np.ndarray:
    """The image-head inputs of every stored photo (several per product), in the image space's order: the CNN
    vectors, joined with the colour descriptors stored beside them (same rows and ordinals) and their neighbour
    captions when the heads use them."""
    images = directory.spaces["image"]
    cnn = np.asarray(images.vectors, dtype=np.float32)
    colour = None
    if model.colour is not None:
        colours = directory.spaces.get(COLOUR_SPACE)
        if colours is None or len(colours.vectors) != len(cnn):
            raise QueryError(f"{directory.path}: the colour descriptors do not match the stored photos; run `vitrina reindex`")
        colour = np.asarray(colours.vectors, dtype=np.float32)
    ids = directory.products.ids
    return model.image_inputs(cnn, colour, [ids[int(r)] for r in images.rows])


def shared_spaces(directory: IndexDirectory, model: FusionModel, behaviour: BehaviourModel | None,
                  config: VitrinaConfig) -> tuple[dict[str, SpaceInfo], dict[str, VectorSpace], list[str]]:
    """The "fused" and "shared-image" spaces of an index under `model`; notes on modalities left out."""
    inputs, sources = modality_inputs(directory, behaviour, model.colour, model.captions)
    usable, notes = {}, []
    if "image" in model.heads and "image" not in inputs and "image" in directory.spaces:
        notes.append("images left out of the shared space: the heads were trained with colour descriptors this index "
                     "does not store; run `vitrina reindex` (it adds them) or `vitrina train` again")
    for modality, source in sources.items():
        if model.usable(modality, source):
            usable[modality] = inputs[modality]
        elif modality in model.heads:
            why = ("the behaviour vectors were refit since the heads were trained" if modality == "behaviour"
                   else f"the heads were trained on {model.inputs[modality]} vectors, these are {source}")
            notes.append(f"{modality} left out of the fused vectors: {why}; run `vitrina train` again")
    if "text" not in usable and "image" not in usable:
        raise QueryError("the shared-space heads fit none of this index's encoders: " + "; ".join(notes))
    infos, spaces = {}, {}
    computed = shared_vectors(model, len(directory.products), usable)
    images = directory.spaces.get("image")
    ordinals = None
    if SHARED_IMAGE_SPACE in computed and images is not None and images.multi:  # text -> image: every image
        computed[SHARED_IMAGE_SPACE] = (model.project("image", every_image_input(directory, model)),
                                        np.asarray(images.rows, dtype=np.int64))
        ordinals = images.ordinals
    if model.attributes is not None and FUSED_SPACE in computed:
        similar = similar_space_vectors(model.attributes, directory, computed[FUSED_SPACE])
        if isinstance(similar, str):
            notes.append(f"`similar` left without attribute terms: {similar}; run `vitrina train --attributes` again")
        else:
            computed[SIMILAR_SPACE] = similar
    for name, (vectors, rows) in computed.items():
        index = ProductIndex.build(vectors, rows, config.index.factory, config.index)
        encoder = model.name if name != SIMILAR_SPACE else f"{model.name}+attributes@{model.attributes.fingerprint}"
        infos[name] = SpaceInfo(encoder=encoder, model="", dim=vectors.shape[1], count=len(rows), factory=index.factory,
                                runtime="fusion heads (numpy)")
        spaces[name] = VectorSpace(index, vectors, rows, ordinals if name == SHARED_IMAGE_SPACE else None)
    return infos, spaces, notes


def write_shared_space(path: Path, directory: IndexDirectory, model: FusionModel, config: VitrinaConfig,
                       behaviour: BehaviourModel | None) -> list[str]:
    """Save the heads in DIR/fusion and (re)write the shared spaces, as one swap of the directory."""
    infos, spaces, notes = shared_spaces(directory, model, behaviour, config)
    with editing(path) as tmp:
        heads = tmp / f".{FUSION_DIR}.new"
        model.save(heads)
        replace_directory(heads, tmp / FUSION_DIR)
        manifest = copy.deepcopy(directory.manifest)
        for name in SHARED_SPACES:
            if name not in spaces and name in manifest.spaces:
                remove_space(tmp, name)
                del manifest.spaces[name]
        for name, space in spaces.items():
            write_space(tmp, name, space)
            manifest.spaces[name] = infos[name]
        write_manifest(tmp, manifest)
    return notes


def train_shared_space(path: str | Path, settings: TrainConfig = TrainConfig(),
                       config: VitrinaConfig | None = None) -> tuple[FusionModel, TrainReport, list[str]]:
    """`vitrina train DIR`: learn the heads on the index's own vectors and write its shared spaces."""
    config = config or VitrinaConfig()
    path = Path(path)
    directory = IndexDirectory.load(path, config.index)
    behaviour, why = load_index_behaviour(path, directory.products.ids, config.shoppers)
    notes = [] if behaviour is not None else [f"no behaviour vectors ({why})"]
    if settings.attributes:
        check_columns(directory.products, settings.attributes)  # before minutes of training
    colour = colour_join(directory, settings.colour)
    if colour is None and settings.colour > 0 and "image" in directory.spaces:
        notes.append("image head trained without colour descriptors: this index stores none (indexed before them); "
                     "`vitrina reindex` adds them")
    captions = training_captions(directory, settings)
    inputs, sources = modality_inputs(directory, behaviour, colour, captions)
    model, report = train_heads(inputs, sources, directory.products.ids, settings,
                                None if behaviour is None else behaviour.interactions, progress=config.progress,
                                colour=colour, captions=captions)
    if settings.attributes:
        model.attributes = attribute_heads(directory, model, settings, behaviour)
        report.attributes = model.attributes.report
    notes += write_shared_space(path, directory, model, config, behaviour)
    report.notes = notes
    return model, report, notes


def training_captions(directory: IndexDirectory, settings: TrainConfig) -> NeighbourCaptions | None:
    """Neighbour captions anchored on the products `settings` trains on (not held out, not validation) that have
    both text and image vectors; None when `settings.captions` is 0 or the index lacks either space."""
    text, image = directory.spaces.get("text"), directory.spaces.get("image")
    if settings.captions <= 0 or text is None or image is None or not len(text.rows) or not len(image.rows):
        return None
    ids = directory.products.ids
    image_vectors, image_rows = image.product_vectors()  # a product with several photos: their mean
    text_vectors, found = text.vectors_of_rows(np.asarray(image_rows, dtype=np.int64))
    cnn = np.asarray(image_vectors, dtype=np.float32)[found]
    rows = np.asarray(image_rows, dtype=np.int64)[found]
    anchor_ids = [ids[int(r)] for r in rows]
    anchors = np.flatnonzero(settings.split(anchor_ids)[2])
    return anchor_captions(anchor_ids, cnn, np.asarray(text_vectors, dtype=np.float32), anchors,
                           scale=settings.captions, neighbours=settings.caption_neighbours,
                           temperature=settings.caption_temperature, max_anchors=settings.caption_anchors,
                           seed=settings.seed)


def attribute_heads(directory: IndexDirectory, model: FusionModel, settings: TrainConfig,
                    behaviour: BehaviourModel | None) -> AttributeHeads:
    """Attribute heads for `settings.attributes`, on the split `train_heads` used (held-out and validation
    products never trained on; the weights chosen on the validation ones)."""
    inputs, sources = modality_inputs(directory, behaviour, model.colour, model.captions)
    usable = {m: inputs[m] for m, source in sources.items() if model.usable(m, source)}
    fused = shared_vectors(model, len(directory.products), usable)[FUSED_SPACE]
    _, validation, train = settings.split(directory.products.ids)
    photo_query = None
    if "image" in usable:  # a product's photo alone, as an upload queries: its image-head inputs projected
        vectors, rows = usable["image"]
        position = {int(r): i for i, r in enumerate(rows)}
        photo_query = lambda wanted: model.fused_query("image", vectors[[position[int(r)] for r in wanted]])  # noqa: E731
    return train_attribute_heads(directory, settings.attributes, fused, photo_query, train, validation,
                                 settings.attribute_settings)


def refresh_shared_space(path: Path, config: VitrinaConfig) -> list[str]:
    """Recompute the fused vectors of a trained index (after its behaviour vectors changed)."""
    directory = IndexDirectory.load(path, config.index)
    model = FusionModel.load(path / FUSION_DIR)
    behaviour, _ = load_index_behaviour(path, directory.products.ids, config.shoppers)
    return write_shared_space(path, directory, model, config, behaviour)


def apply_shared_space(path: Path, model: FusionModel, config: VitrinaConfig) -> list[str]:
    """`index --fusion-from SOURCE`: put heads trained on another index into the index at `path`."""
    return write_shared_space(path, IndexDirectory.load(path, config.index), model, config, None)

