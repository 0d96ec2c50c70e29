"""Encoder speed, PyTorch vs ONNX Runtime, measured side by side in one run (issue 4 targets).

Every contender gets the same inputs and the same CPU threads (--threads, default 2); measurements
are interleaved over --rounds rounds and the median is kept, so machine noise hits all of them alike.

  text, batch 64     all-MiniLM-L6-v2 on Home Depot titles: Vitrina's PyTorch encoder (fp32, eager),
                     the sentence-transformers package's `encode`, ONNX fp32 and ONNX int8 (texts/s)
  text, one query    p50 / p99 latency of encoding a single real query
  image, batch 16    ResNet-50, CLIP ViT-B/32 (random weights) and EfficientNet-Lite0 at 224x224:
                     PyTorch eager, Vitrina's TorchScript path (CNNs) and ONNX fp32 (images/s, model only)
  startup            `vitrina search` in a fresh process, ONNX vs PyTorch backend: wall time, peak RSS
  parity             Home Depot, all 54,667 titles and 8,960 dev queries: dense retrieval with PyTorch
                     fp32 vs ONNX int8 vectors (top-10 overlap, nDCG@10)
  GPU                when CUDA is present: PyTorch fp16 vs ONNX Runtime CUDA fp16, text and image

    .venv/bin/python benchmarks/encoders.py [--threads 2] [--rounds 5] [--json out/encoders.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from benchutil import DATA, DEFAULT_OUT, REPO, markdown_table
from vitrina.encoders import EncoderConfig, load_image_encoder, load_text_encoder
from vitrina.encoders.factory import packaged_minilm_dir
from vitrina.encoders.onnx_export import export_encoder
from vitrina.encoders.onnx_runtime import load_onnx_encoder

TEXT_BATCH, IMAGE_BATCH, IMAGE_SIZE = 64, 16, 224


def titles(n: int) -> list[str]:
    with (DATA / "homedepot" / "products.csv").open(newline="", encoding="utf-8") as f:
        return [row["title"] for _, row in zip(range(n), csv.DictReader(f))]


def queries(n: int) -> list[str]:
    seen: dict[str, None] = {}
    with (DATA / "homedepot" / "qrels_dev.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            seen.setdefault(row["query"], None)
            if len(seen) == n:
                break
    return list(seen)


def median_seconds(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Each contender run once as warm-up, then `rounds` interleaved timed runs; the median seconds."""
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def text_throughput(threads: int, rounds: int, work: Path) -> tuple[list[list], dict]:
    from sentence_transformers import SentenceTransformer

    texts = titles(1024)
    torch_enc = load_text_encoder("all-MiniLM-L6-v2", EncoderConfig(backend="torch", device="cpu", batch_size=TEXT_BATCH))
    export_encoder(torch_enc, work / "minilm", ("fp32", "int8"))
    onnx = {p: load_onnx_encoder(work / "minilm", EncoderConfig(precision=p, threads=threads, batch_size=TEXT_BATCH))
            for p in ("fp32", "int8")}
    st = SentenceTransformer(str(packaged_minilm_dir()), device="cpu")
    contenders = {
        "PyTorch fp32 eager (Vitrina)": lambda: torch_enc.encode(texts),
        "sentence-transformers encode": lambda: st.encode(texts, batch_size=TEXT_BATCH),
        "ONNX fp32": lambda: onnx["fp32"].encode(texts),
        "ONNX int8": lambda: onnx["int8"].encode(texts),
    }
    seconds = median_seconds(contenders, rounds)
    base, st_s = seconds["PyTorch fp32 eager (Vitrina)"], seconds["sentence-transformers encode"]
    rows = [[name, f"{len(texts) / s:,.0f}", f"{base / s:.2f}x", f"{st_s / s:.2f}x"] for name, s in seconds.items()]

    single = queries(200)
    latency_rows, latency = [], {}
    for name, encode in (("PyTorch fp32 eager", torch_enc.encode), ("ONNX fp32", onnx["fp32"].encode),
                         ("ONNX int8", onnx["int8"].encode)):
        for q in single[:20]:
            encode([q])
        ms = []
        for q in single:
            start = time.perf_counter()
            encode([q])
            ms.append(1000 * (time.perf_counter() - start))
        p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
        latency[name] = {"p50_ms": p50, "p99_ms": p99}
        latency_rows.append([name, f"{p50:.2f}", f"{p99:.2f}"])
    return rows, {"batch64_texts_per_s": {n: len(texts) / s for n, s in seconds.items()}, "one_query": latency,
                  "latency_rows": latency_rows}


def random_weight_specs(work: Path) -> dict[str, str]:
    """Model specs of ResNet-50 and CLIP ViT-B/32 with random weights saved under `work`."""
    import open_clip
    import torchvision

    torch.manual_seed(0)
    resnet = work / "resnet50-random.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), resnet)
    clip = work / "vit-b-32-random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), clip)
    return {"ResNet-50": f"resnet50={resnet}", "CLIP ViT-B/32": f"clip:ViT-B-32={clip}", "EfficientNet-Lite0": "efficientnet-lite0"}


def image_throughput(threads: int, rounds: int, work: Path) -> tuple[list[list], dict]:
    from vitrina.encoders.clip import ClipImageEncoder
    from vitrina.encoders.onnx_export import clip_geometry
    from vitrina.encoders.image import NormalizedFeatures

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (IMAGE_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float().div(255.0).contiguous()
    rows, figures = [], {}
    for label, spec in random_weight_specs(work).items():
        encoder = load_image_encoder(spec, EncoderConfig(backend="torch", device="cpu", batch_size=IMAGE_BATCH))
        if isinstance(encoder, ClipImageEncoder):
            _, mean, std = clip_geometry(encoder.clip.preprocess)
            eager = NormalizedFeatures(encoder.clip.model.visual, mean, std).eval()
            scripted = None
        else:
            eager, scripted = encoder.eager_network, encoder.network
        out = work / label.replace("/", "-").replace(" ", "-")
        export_encoder(encoder, out)
        onnx = load_onnx_encoder(out, EncoderConfig(threads=threads, batch_size=IMAGE_BATCH))

        def torch_run(net):
            def run():
                with torch.inference_mode():
                    return net(x)
            return run

        contenders = {"PyTorch eager": torch_run(eager)}
        if scripted is not None:
            contenders["PyTorch TorchScript (Vitrina's CPU path)"] = torch_run(scripted)
        contenders["ONNX fp32"] = lambda: onnx.run({"pixels": pixels})
        seconds = median_seconds(contenders, rounds)
        eager_s = seconds["PyTorch eager"]
        figures[label] = {name: IMAGE_BATCH / s for name, s in seconds.items()}
        rows += [[label, name, f"{IMAGE_BATCH / s:.1f}", f"{eager_s / s:.2f}x"] for name, s in seconds.items()]
    return rows, figures


def startup(work: Path) -> tuple[list[list], dict]:
    """A fresh `vitrina search` process per backend on a 100-product index built with ONNX encoders kept."""
    from benchutil import subset_catalog

    catalog = subset_catalog(DATA / "fashion" / "products.csv", 100, work, image_field="image")
    index = work / "startup-index"
    vitrina = str(REPO / ".venv" / "bin" / "vitrina")
    subprocess.run([vitrina, "index", str(catalog), "--out", str(index), "--backend", "onnx", "-q",
                    "--image-root", str(DATA)], check=True,
                   capture_output=True)
    rows, figures = [], {}
    for backend in ("onnx", "torch"):
        samples = []
        for _ in range(3):
            done = subprocess.run(["/usr/bin/time", "-f", "%e %M", vitrina, "search", str(index), "blue running shoes",
                                   "--backend", backend, "--mode", "dense", "--json"],
                                  capture_output=True, text=True, check=True)
            wall, rss_kb = done.stderr.strip().splitlines()[-1].split()
            samples.append((float(wall), int(rss_kb) / 1024))
        wall = statistics.median(s[0] for s in samples)
        rss = statistics.median(s[1] for s in samples)
        figures[backend] = {"wall_s": wall, "peak_rss_mib": rss}
        rows.append([backend, f"{wall:.2f}", f"{rss:.0f}"])
    return rows, figures


def ranking_parity(out: Path) -> tuple[list[list], dict]:
    """Dense nDCG@10 and top-10 overlap on every Home Depot dev query, PyTorch fp32 vs ONNX int8 indexes."""
    from vitrina.engine.data.catalog import CatalogConfig
    from vitrina.engine.config import VitrinaConfig
    from vitrina.engine.evaluate.evaluation import evaluate_text, read_qrels
    from vitrina.engine.build.indexing import build_index
    from vitrina.engine.query.search import SearchSession
    from vitrina.index import IndexConfig

    sessions = {}
    for backend in ("torch", "onnx"):
        target = out / f"hd-dense-{backend}"
        config = VitrinaConfig(image_model=None, catalog=CatalogConfig(id_field="product_id"),
                               encoders=EncoderConfig(backend=backend, batch_size=TEXT_BATCH),
                               index=IndexConfig(lexical=None), progress=False)
        if not (target / "manifest.json").is_file():
            build_index(DATA / "homedepot" / "products.csv", target, config)
        sessions[backend] = SearchSession(target, config)
    qrels = read_qrels(DATA / "homedepot" / "qrels_dev.csv")
    ndcg, tops = {}, {}
    for backend, session in sessions.items():
        ndcg[backend] = evaluate_text(session, qrels, 10, methods=["dense"], include_trained=True,
                                      progress=False).method("dense").mean("ndcg@10")
        tops[backend] = session.retrieve(list(qrels.queries.values()), 10, mode="dense")[1]
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(tops["torch"], tops["onnx"])]))
    change = 100 * (ndcg["onnx"] - ndcg["torch"]) / ndcg["torch"]
    rows = [["PyTorch fp32", f"{ndcg['torch']:.4f}", ""], ["ONNX int8", f"{ndcg['onnx']:.4f}", f"{change:+.2f}%"],
            ["top-10 overlap", f"{overlap:.4f}", ""]]
    return rows, {"ndcg@10": ndcg, "ndcg_change_pct": change, "top10_overlap": overlap, "queries": len(qrels.queries)}


def gpu(rounds: int, work: Path) -> tuple[list[list], dict]:
    """PyTorch fp16 vs ONNX Runtime CUDA fp16 (text batch 64, ResNet-50 batch 16); only with a GPU."""
    texts = titles(1024)
    torch_enc = load_text_encoder("all-MiniLM-L6-v2", EncoderConfig(backend="torch", device="cuda", batch_size=TEXT_BATCH))
    torch_enc.model.half()
    export_encoder(load_text_encoder("all-MiniLM-L6-v2", EncoderConfig(backend="torch", device="cpu")), work / "gpu-minilm",
                   ("fp32", "fp16"))
    onnx_text = load_onnx_encoder(work / "gpu-minilm", EncoderConfig(device="cuda", precision="fp16", batch_size=TEXT_BATCH))
    spec = random_weight_specs(work)["ResNet-50"]
    resnet = load_image_encoder(spec, EncoderConfig(backend="torch", device="cpu"))
    export_encoder(resnet, work / "gpu-resnet", ("fp32", "fp16"))
    net = resnet.eager_network.cuda().half()
    onnx_image = load_onnx_encoder(work / "gpu-resnet", EncoderConfig(device="cuda", precision="fp16", batch_size=IMAGE_BATCH))
    pixels = np.random.default_rng(0).integers(0, 256, (IMAGE_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).cuda().permute(0, 3, 1, 2).half().div(255.0)

    def torch_image():
        with torch.inference_mode():
            net(x)
            torch.cuda.synchronize()

    seconds = median_seconds({
        "text: PyTorch fp16": lambda: torch_enc.encode(texts),
        "text: ONNX CUDA fp16": lambda: onnx_text.encode(texts),
        "ResNet-50: PyTorch fp16": torch_image,
        "ResNet-50: ONNX CUDA fp16": lambda: onnx_image.run({"pixels": pixels}),
    }, rounds)
    per = {name: (len(texts) if name.startswith("text") else IMAGE_BATCH) / s for name, s in seconds.items()}
    return [[name, f"{v:,.0f}"] for name, v in per.items()], {"items_per_s": per, "device": torch.cuda.get_device_name()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: text,image,startup,parity,gpu")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUT / "encoders.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(args.skip.split(","))
    results: dict = {"threads": args.threads, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="vitrina-bench-") as tmp:
        work = Path(tmp)
        if "text" not in skip:
            rows, results["text"] = text_throughput(args.threads, args.rounds, work)
            print("\nText, batch 64, all-MiniLM-L6-v2, 1,024 Home Depot titles\n")
            print(markdown_table(["encoder", "texts/s", "vs PyTorch", "vs sentence-transformers"], rows))
            print("\nText, one query (200 Home Depot queries)\n")
            print(markdown_table(["encoder", "p50 ms", "p99 ms"], results["text"].pop("latency_rows")))
        if "image" not in skip:
            rows, results["image"] = image_throughput(args.threads, args.rounds, work)
            print(f"\nImage, batch {IMAGE_BATCH} at {IMAGE_SIZE}x{IMAGE_SIZE} (model only)\n")
            print(markdown_table(["model", "runtime", "images/s", "vs eager"], rows))
        if "startup" not in skip:
            rows, results["startup"] = startup(work)
            print("\n`vitrina search` in a fresh process (100-product index, dense query)\n")
            print(markdown_table(["backend", "wall s", "peak RSS MiB"], rows))
        if "parity" not in skip:
            rows, results["parity"] = ranking_parity(DEFAULT_OUT)
            print("\nRanking parity, Home Depot dense retrieval (54,667 titles, 8,960 queries)\n")
            print(markdown_table(["", "nDCG@10", "change"], rows))
        if "gpu" not in skip:
            if torch.cuda.is_available():
                rows, results["gpu"] = gpu(args.rounds, work)
                print(f"\nGPU ({results['gpu']['device']})\n")
                print(markdown_table(["encoder", "items/s"], rows))
            else:
                print("\nGPU: no CUDA device here; section skipped")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
