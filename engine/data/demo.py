"""The bundled demo catalog: 500 fashion products with photos (engine/demo_data, see its ATTRIBUTION.md)."""

from pathlib import Path

DEMO_CATALOG = Path(__file__).resolve().parents[1] / "demo_data" / "products.csv"
