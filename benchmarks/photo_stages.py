"""Where the CPU of bulk photo indexing goes (issue 19): each stage of `vitrina index` of fashion products with
photos timed alone in one fresh process, CPU seconds (user + system, all threads) and wall seconds, with the
default settings (catalog text and photos on OpenVINO, bf16 where the CPU has it). The stages run one after the
other here (the index overlaps decoding with the models); what `vitrina index` spends beyond their sum (FAISS,
BM25, writing, shard bookkeeping) is the whole-process CPU (`photo_speed.py`) minus it.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/photo_stages.py [--limit 1500] [--runtime auto]
"""

from __future__ import annotations

import resource
import time

STARTED_CPU = time.process_time()  # the interpreter's own start-up is not in it: see "python start-up" below
STARTED = time.perf_counter()

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Sequence, TypeVar  # noqa: E402

T = TypeVar("T")


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stage(rows: list[list[str]], name: str, run: Callable[[], T], count: int) -> T:
    """Runs one stage and adds its row: CPU s, wall s, CPU ms per product."""
    cpu, wall = cpu_now(), time.perf_counter()
    result = run()
    cpu, wall = cpu_now() - cpu, time.perf_counter() - wall
    rows.append([name, f"{cpu:.2f}", f"{wall:.2f}", f"{1000 * cpu / count:.2f}"])
    return result


def python_startup() -> float:
    """CPU seconds of a bare `python -c pass` (the interpreter, before any import of ours)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=1500, help="first N fashion products (default %(default)s)")
    parser.add_argument("--runtime", default="auto", help="EncoderConfig.runtime (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/vitrina-photo-stages"), help="work folder")
    args = parser.parse_args(argv)
    rows: list[list[str]] = []
    count = args.limit

    def imports() -> None:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401

        import vitrina.cli.build  # noqa: F401
        import vitrina.engine.build.pipeline  # noqa: F401
        import vitrina.encoders.openvino_image  # noqa: F401
        try:
            import openvino  # noqa: F401
        except ImportError:
            pass

    stage(rows, "imports (vitrina, numpy, onnxruntime, openvino)", imports, count)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchutil import DATA, subset_catalog
    from vitrina.encoders import ImageConfig, load_image_encoder, load_text_encoder
    from vitrina.encoders.colour import ColourConfig, colour_descriptor
    from vitrina.encoders.config import EncoderConfig
    from vitrina.encoders.image_io import decode_image, read_image_bytes
    from vitrina.engine.config import VitrinaConfig
    from vitrina.engine.data.catalog import CatalogConfig, read_catalog
    from vitrina.index.content import content_hash

    import numpy as np

    catalog_file = subset_catalog(DATA / "fashion" / "products.csv", count, args.out, image_field="image")
    config = EncoderConfig(runtime=args.runtime).for_catalog()
    text = stage(rows, "load the text model", lambda: load_text_encoder("all-MiniLM-L6-v2", config), count)
    image = stage(rows, "load the image model", lambda: load_image_encoder("efficientnet-lite0", config), count)
    vitrina = VitrinaConfig(images=ImageConfig(roots=(DATA,)))
    fields = CatalogConfig(image_field="image")
    products = stage(rows, "read the catalog", lambda: list(read_catalog(catalog_file, fields).products), count)
    titles = [p.text for p in products]
    stage(rows, f"encode {len(titles)} titles ({text.precision})", lambda: text.encode(titles), count)
    sources = [p.image_sources[0] for p in products]
    data = stage(rows, "read and hash the photos", lambda: [
        (read_image_bytes(s, config.image_timeout_s, vitrina.images), None) for s in sources], count)
    stage(rows, "  (content hash)", lambda: [content_hash(d) for d, _ in data], count)
    photos = stage(rows, "decode the photos", lambda: [
        decode_image(d, s, config.image_max_pixels, config.image_max_aspect) for (d, _), s in zip(data, sources)], count)
    stage(rows, "colour descriptors", lambda: [colour_descriptor(p, ColourConfig()) for p in photos], count)
    pixels = stage(rows, "model input (fit, uint8 array)", lambda: np.stack([image.preprocess([p])[0] for p in photos]), count)
    step = config.batch_size

    def model() -> np.ndarray:
        if hasattr(image, "submit"):
            futures = [image.submit(pixels[i : i + step]) for i in range(0, len(pixels), step)]
            image.wait()
            return np.concatenate([f.result() for f in futures])
        return image.encode_pixels(pixels)

    stage(rows, f"image model ({getattr(image, 'precision', '?')}, {type(image).__name__})", model, count)
    total = sum(float(r[1]) for r in rows if not r[0].startswith("  "))
    startup = python_startup()
    rows.append(["python start-up (bare interpreter, measured apart)", f"{startup:.2f}", "", f"{1000 * startup / count:.2f}"])
    total += startup
    rows.append(["sum of the stages", f"{total:.2f}", "", f"{1000 * total / count:.2f}"])
    print(f"{count} fashion products with photos, runtime {args.runtime}, load average "
          f"{Path('/proc/loadavg').read_text().split()[0]}")
    print("| stage | CPU s | wall s | CPU ms/product |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
