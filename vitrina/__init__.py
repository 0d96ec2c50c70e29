"""Vitrina: multimodal embedding and vector search for e-commerce catalogs.

    import vitrina
    index = vitrina.Index.build(vitrina.DEMO_CATALOG, "demo-index")
    for hit in index.search("black leather wallet", k=5):
        print(hit.id, hit.score, hit.product["title"])

The names below are the public API; everything else (vitrina.engine, vitrina.encoders, vitrina.index,
vitrina.serving) is the implementation the API, the CLI and the HTTP server share.
"""

from pathlib import Path as _Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Installed, the sub-packages (engine, encoders, index, serving) sit inside this package. In a source
# checkout they sit beside this folder, at the repository's top level: look there too.
_checkout = _Path(__file__).resolve().parent.parent
if (_checkout / "setup.cfg").is_file() and (_checkout / "engine" / "__init__.py").is_file():
    __path__.append(str(_checkout))  # noqa: F821 (the package's own search path)

# The errors first: every layer's error types subclass vitrina.errors.VitrinaError.
from vitrina.errors import VitrinaError  # noqa: E402
from vitrina.lazy import lazy_names  # noqa: E402
from vitrina.encoders.errors import EncoderError, ImageLoadError  # noqa: E402
from vitrina.engine.errors import ArgumentError, CatalogError, QueryError  # noqa: E402
from vitrina.index.errors import IndexStoreError  # noqa: E402

# Everything else is imported on first use (PEP 562), so `import vitrina` and the command line load only
# what a command needs: `vitrina search` never loads PyTorch, pandas, the ALS library or the build pipeline.
_LAZY = {
    "EncoderConfig": "vitrina.encoders.config",
    "ImageConfig": "vitrina.encoders.image_policy",
    "Index": "vitrina.engine.api",
    "IndexReport": "vitrina.engine.build.indexing",
    "ReindexConfig": "vitrina.engine.build.reindex",
    "ReindexReport": "vitrina.engine.build.reindex",
    "UpdateReport": "vitrina.engine.build.updates",
    "RecommendConfig": "vitrina.engine.config",
    "ShopperConfig": "vitrina.engine.config",
    "VitrinaConfig": "vitrina.engine.config",
    "CatalogConfig": "vitrina.engine.data.catalog",
    "DEMO_CATALOG": "vitrina.engine.data.demo",
    "EventFieldConfig": "vitrina.engine.data.events",
    "EventWeightConfig": "vitrina.engine.data.events",
    "Hits": "vitrina.engine.query.hits",
    "SearchHit": "vitrina.engine.query.search",
    "IndexConfig": "vitrina.index.config",
    "FilterConfig": "vitrina.index.filters",
    "HybridConfig": "vitrina.index.hybrid",
    "LexicalConfig": "vitrina.index.lexical",
    "IndexManifest": "vitrina.index.manifest",
    "BehaviourConfig": "vitrina.engine.learn.behaviour",
    "Evaluation": "vitrina.engine.evaluate.evaluation",
    "EventsAdded": "vitrina.engine.learn.feedback",
    "Forgotten": "vitrina.engine.learn.shoppers",
    "Qrels": "vitrina.engine.evaluate.evaluation",
    "TrainConfig": "vitrina.engine.learn.shared_space",
    "TrainReport": "vitrina.engine.learn.shared_space",
}

if TYPE_CHECKING:
    from vitrina.encoders.config import EncoderConfig
    from vitrina.encoders.image_policy import ImageConfig
    from vitrina.engine.api import Index
    from vitrina.engine.build.indexing import IndexReport
    from vitrina.engine.build.reindex import ReindexConfig, ReindexReport
    from vitrina.engine.build.updates import UpdateReport
    from vitrina.engine.config import RecommendConfig, ShopperConfig, VitrinaConfig
    from vitrina.engine.data.catalog import CatalogConfig
    from vitrina.engine.data.demo import DEMO_CATALOG
    from vitrina.engine.data.events import EventFieldConfig, EventWeightConfig
    from vitrina.engine.query.hits import Hits
    from vitrina.engine.query.search import SearchHit
    from vitrina.index.config import IndexConfig
    from vitrina.index.filters import FilterConfig
    from vitrina.index.hybrid import HybridConfig
    from vitrina.index.lexical import LexicalConfig
    from vitrina.index.manifest import IndexManifest
    from vitrina.engine.evaluate.evaluation import Evaluation, Qrels
    from vitrina.engine.learn.behaviour import BehaviourConfig
    from vitrina.engine.learn.feedback import EventsAdded
    from vitrina.engine.learn.shoppers import Forgotten
    from vitrina.engine.learn.shared_space import TrainConfig, TrainReport


__getattr__ = lazy_names(__name__, _LAZY, globals())


__all__ = [
    # the index and its answers
    "Index",
    "SearchHit",
    "Hits",
    "IndexManifest",
    "DEMO_CATALOG",
    "__version__",
    # reports of writes
    "IndexReport",
    "ReindexReport",
    "UpdateReport",
    "EventsAdded",
    "Forgotten",
    "TrainReport",
    "Evaluation",
    "Qrels",
    # configuration
    "VitrinaConfig",
    "CatalogConfig",
    "EncoderConfig",
    "ImageConfig",
    "IndexConfig",
    "LexicalConfig",
    "HybridConfig",
    "FilterConfig",
    "ShopperConfig",
    "RecommendConfig",
    "ReindexConfig",
    "EventFieldConfig",
    "EventWeightConfig",
    "BehaviourConfig",
    "TrainConfig",
    # errors
    "VitrinaError",
    "ArgumentError",
    "CatalogError",
    "QueryError",
    "EncoderError",
    "ImageLoadError",
    "IndexStoreError",
]
