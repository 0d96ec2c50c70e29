"""Item 8: a new index version (reindex, upsert, delete) keeps what shoppers taught the old one.

Behaviour: the live version's snapshot moved onto the new product list by product id (a deleted
product's events stay in the root's log but have no product; a new product has no vector yet), plus
the log events after the snapshot; with no snapshot, a fit from the log. Trained heads (DIR/fusion):
reused when the new version's encoders are those the heads were trained on, the fused and
shared-image spaces (and the similar space of attribute heads) recomputed with them; else left out with a note, unless `retrain` (then new heads
are trained on the new version, with the old heads' training settings; with no heads in the live
version, `retrain` takes the settings of the newest kept version that had some).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vitrina.engine.learn.behaviour import BehaviourModel
from vitrina.engine.config import VitrinaConfig
from vitrina.engine.learn.fusion import FUSION_DIR, FusionModel
from vitrina.engine.learn.shoppers import ShopperState, write_snapshot
from vitrina.index import IndexDirectory
from vitrina.index.versions import versions


@dataclass
class Carried:
    """What a new version takes over from the live one, to be written into it before it is published."""

    behaviour: BehaviourModel | None = None
    heads: FusionModel | None = None
    notes: list[str] = field(default_factory=list)

    def write(self, version_dir: Path) -> None:
        """Save the behaviour snapshot and the heads into the (not yet published) version directory."""
        if self.behaviour is not None:
            write_snapshot(version_dir, self.behaviour)
        if self.heads is not None:
            self.heads.save(Path(version_dir) / FUSION_DIR)


def carry_over(root: Path, live_dir: Path | None, directory: IndexDirectory, config: VitrinaConfig,
               retrain: bool = False) -> Carried:
    """The behaviour model and shared spaces of `directory` (a new version of `root`, not saved yet) from
    the live version `live_dir` and the root's log; the shared spaces are added to `directory`."""
    carried = Carried()
    state = ShopperState(root, live_dir, list(directory.products.ids), config.shoppers)
    if state.model is not None and not state.model.keyed:  # raw ids: never into a new version
        with state.store.locked():
            state.ready_to_write()
    carried.behaviour = state.model
    if carried.behaviour is not None:
        carried.behaviour.log_generation, carried.behaviour.log_offset = state.generation, state.offset
    heads_dir = _heads_dir(root, live_dir, retrain)
    if heads_dir is None:
        return carried
    heads = FusionModel.load(heads_dir)
    mismatched = [f"{m} (heads trained on {heads.inputs.get(m)}, this version has {directory.manifest.spaces[m].encoder})"
                  for m in ("text", "image") if m in heads.heads and m in directory.manifest.spaces
                  and not heads.usable(m, directory.manifest.spaces[m].encoder)]
    if retrain:
        from vitrina.engine.learn.colour_vectors import colour_join
        from vitrina.engine.learn.shared_space import TrainConfig, modality_inputs, train_heads, training_captions

        known = TrainConfig.__dataclass_fields__
        recorded = heads.training.get("settings", {})
        settings = TrainConfig(**{k: v for k, v in recorded.items() if k in known},
                              **({} if "colour" in recorded else {"colour": 0.0}),
                              **({} if "captions" in recorded else {"captions": 0.0}),
                              **({} if "schedule" in recorded else {"schedule": "constant"}))
        colour = colour_join(directory, settings.colour)
        captions = training_captions(directory, settings)
        inputs, sources = modality_inputs(directory, carried.behaviour, colour, captions)
        heads, _ = train_heads(inputs, sources, list(directory.products.ids), settings,
                               None if carried.behaviour is None else carried.behaviour.interactions,
                               heads.weights, progress=config.progress, colour=colour, captions=captions)
        if settings.attributes:  # the old heads were trained with --attributes: those too
            from vitrina.engine.learn.shared_space import attribute_heads

            heads.attributes = attribute_heads(directory, heads, settings, carried.behaviour)
        carried.notes.append("shared-space heads retrained on the new version")
    elif mismatched:
        carried.notes.append("the trained fused space was not carried over: the encoders changed for "
                             + "; ".join(mismatched) + "; run again with --retrain (or `vitrina train`)")
        return carried
    from vitrina.engine.learn.shared_space import shared_spaces

    infos, spaces, notes = shared_spaces(directory, heads, carried.behaviour, config)
    directory.spaces.update(spaces)
    directory.manifest.spaces.update(infos)
    carried.heads = heads
    carried.notes += notes
    return carried


def _heads_dir(root: Path, live_dir: Path | None, retrain: bool) -> Path | None:
    """The live version's heads; with `retrain`, else those of the newest kept version that has some
    (a version made without them, after the encoders changed, can be retrained)."""
    candidates = [] if live_dir is None else [Path(live_dir)]
    if retrain:
        candidates += list(reversed(versions(root)))
    return next((d / FUSION_DIR for d in candidates if (d / FUSION_DIR).is_dir()), None)
