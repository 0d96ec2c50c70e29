"""The levers of bulk photo indexing (issue 19), each measured alone in this process: CPU ms per photo
(user + system of the process, all threads; steadier than wall time on a shared machine) and parity.

  runtime   EfficientNet-Lite0 on the same uint8 pixels, batch 32, 2 threads: ONNX Runtime fp32, OpenVINO
            fp32, OpenVINO bf16 (where the CPU has it) one batch at a time, and the catalog default (a batch per
            stream of one thread, submitted); with --int8 also static int8 (QDQ, MinMax calibration on 200
            fashion photos outside the measured ones) on both runtimes and three NNCF recipes (300 photos).
            Cosine to ONNX Runtime fp32.
  colour    the colour descriptor: the joint 8 x P x 3 histogram it had against the per-axis one it has now
            (must be bit-identical).
  draft     decoding big JPEGs (H&M photos upscaled to 2000x3000, quality 90) in full against
            `decode_image(draft_to=224)`, and the cosine of their image vectors.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/photo_levers.py [--photos 320] [--int8]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from benchutil import DATA, markdown_table
from vitrina.encoders import colour as colour_module
from vitrina.encoders.colour import ColourConfig, colour_descriptor
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.factory import load_image_encoder
from vitrina.encoders.image_io import decode_image
from vitrina.encoders.onnx_runtime import load_onnx_encoder


def cpu_ms(run: Callable[[], object], count: int) -> tuple[float, object]:
    """CPU milliseconds per item of one call, and its result."""
    start = time.process_time()
    result = run()
    return 1000 * (time.process_time() - start) / count, result


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def fashion_photos(start: int, count: int) -> list[Image.Image]:
    files = sorted((DATA / "fashion" / "images").glob("*.jpg"))
    return [Image.open(f).convert("RGB") for f in files[start : start + count]]


def int8_graph(fp32: Path, out: Path, calibration: np.ndarray) -> Path:
    """A static int8 (QDQ, per channel) copy of an image graph, calibrated on `calibration` pixels."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"pixels": calibration[i : i + 20]} for i in range(0, len(calibration), 20)])

        def get_next(self):
            return next(self.batches, None)

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def streamed(compiled, pixels: np.ndarray, step: int = 32) -> np.ndarray:
    """The graph's outputs for every batch of `pixels`, a batch per stream of `compiled` at once."""
    import openvino as ov

    queue, results = ov.AsyncInferQueue(compiled, int(compiled.get_property("NUM_STREAMS"))), {}
    queue.set_callback(lambda request, n: results.__setitem__(n, np.array(request.get_output_tensor(0).data)))
    for n, start in enumerate(range(0, len(pixels), step)):
        queue.start_async({0: pixels[start : start + step]}, n)
    queue.wait_all()
    return np.concatenate([results[n] for n in range(len(results))])


def nncf_graphs(fp32: Path, calibration: np.ndarray) -> dict[str, object]:
    """OpenVINO int8 models quantised by NNCF (post-training, calibrated on `calibration` pixels), by recipe."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32))
    data = nncf.Dataset([calibration[i : i + 30] for i in range(0, len(calibration), 30)])
    convs = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "MatMul")]
    return {
        "NNCF int8 (MinMax, fast bias correction)": nncf.quantize(model, data, subset_size=len(calibration)),
        "NNCF int8, mixed preset": nncf.quantize(model, data, preset=nncf.QuantizationPreset.MIXED,
                                                 subset_size=len(calibration)),
        "NNCF int8, mixed, stem and head convs fp32": nncf.quantize(
            model, data, preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration),
            ignored_scope=nncf.IgnoredScope(names=[convs[0], convs[-1]])),
    }


def runtime_rows(count: int, int8: bool, work: Path) -> list[list[object]]:
    base = EncoderConfig(device="cpu", threads=2, batch_size=32)
    ort = load_image_encoder("efficientnet-lite0", base)  # ONNX Runtime fp32 (a query-side config)
    pixels = ort.preprocess(fashion_photos(0, count))
    catalog = load_onnx_encoder(ort.model_dir, EncoderConfig(device="cpu", threads=2, batch_size=32).for_catalog())

    def batched(encode: Callable[[np.ndarray], np.ndarray]) -> Callable[[], np.ndarray]:
        return lambda: np.concatenate([encode(pixels[i : i + 32]) for i in range(0, len(pixels), 32)])

    def submitted() -> np.ndarray:
        futures = [catalog.submit(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]
        catalog.wait()
        return np.concatenate([f.result() for f in futures])

    contenders: dict[str, Callable[[], np.ndarray]] = {
        "ONNX Runtime fp32": batched(ort.encode_pixels),
        "OpenVINO fp32, one batch on 2 threads (`--precision fp32` before)": batched(load_onnx_encoder(ort.model_dir, EncoderConfig(
            device="cpu", threads=2, batch_size=32, runtime="openvino", precision="fp32")).encode_pixels),
        "OpenVINO bf16, one batch on 2 threads (photo queries)": batched(load_onnx_encoder(ort.model_dir, EncoderConfig(
            device="cpu", threads=2, batch_size=32, runtime="openvino")).encode_pixels),
        f"OpenVINO {catalog.precision}, a batch per stream of 1 thread, submitted (catalog default)": submitted,
    }
    if int8:
        import onnxruntime as ort_module
        import openvino as ov

        calibration = ort.preprocess(fashion_photos(8083 - 300, 300))
        graph = int8_graph(ort.model_dir / "model.onnx", work / "lite0.int8.onnx", calibration[:200])
        options = ort_module.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort_module.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        request = ov.Core().compile_model(str(graph), "CPU", {"INFERENCE_NUM_THREADS": 2}).create_infer_request()
        contenders["ONNX Runtime int8 (static QDQ)"] = batched(lambda p: session.run(None, {"pixels": p})[0])
        contenders["OpenVINO int8 (static QDQ)"] = batched(lambda p: np.array(request.infer({0: p})[0]))
        streams = {"INFERENCE_NUM_THREADS": 2, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 2}
        for name, model in nncf_graphs(ort.model_dir / "model.onnx", calibration).items():
            compiled = ov.Core().compile_model(model, "CPU", streams)
            contenders[f"{name}, a batch per stream"] = lambda compiled=compiled: streamed(compiled, pixels)
    rows: list[list[object]] = []
    reference, first_ms = None, None
    for name, run in contenders.items():
        run()  # warm-up
        ms, vectors = cpu_ms(run, len(pixels))
        reference = vectors if reference is None else reference
        first_ms = ms if first_ms is None else first_ms
        c = cosine(np.asarray(vectors), reference)
        rows.append([name, f"{ms:.2f}", f"{first_ms / ms:.2f}x", f"{c.mean():.5f}", f"{c.min():.4f}"])
    return rows


def joint_histogram(lab: np.ndarray, weights: np.ndarray, config: ColourConfig) -> np.ndarray:
    """The soft colour histogram as first written (8 x P x 3 corner arrays)."""
    lows = np.array([0.0, -80.0, -80.0], dtype=np.float32)
    spans = np.array([100.0, 160.0, 160.0], dtype=np.float32)
    bins = np.array(config.bins)
    pos = np.clip((lab.reshape(-1, 3) - lows) / spans, 0.0, 1.0 - 1e-6) * bins
    w = weights.reshape(-1)
    centred = pos - 0.5
    base = np.floor(centred).astype(np.int64)
    frac = (centred - base).astype(np.float32)
    offsets = np.array([[(corner >> d) & 1 for d in range(3)] for corner in range(8)])
    idx = np.clip(base[None] + offsets[:, None, :], 0, bins - 1)
    share = np.prod(np.where(offsets[:, None, :] == 1, frac[None], 1.0 - frac[None]), axis=2)
    flat = np.ravel_multi_index(idx.reshape(-1, 3).T, config.bins)
    return np.zeros(config.dim) + np.bincount(flat, weights=(share * w[None]).reshape(-1), minlength=config.dim)


def colour_rows(count: int) -> list[list[object]]:
    photos = fashion_photos(0, count)
    fast_ms, fast = cpu_ms(lambda: np.stack([colour_descriptor(p) for p in photos]), count)
    kept = colour_module._histogram
    colour_module._histogram = joint_histogram
    try:
        slow_ms, slow = cpu_ms(lambda: np.stack([colour_descriptor(p) for p in photos]), count)
    finally:
        colour_module._histogram = kept
    same = np.array_equal(fast, slow)
    return [["joint histogram (before)", f"{slow_ms:.2f}", "1.00x", "-"],
            ["per-axis histogram (now)", f"{fast_ms:.2f}", f"{slow_ms / fast_ms:.2f}x", f"bit-identical: {same}"]]


def draft_rows(count: int) -> list[list[object]]:
    files = sorted((DATA / "hm" / "images").glob("*.jpg"))[:count]
    jpegs = []
    for f in files:
        out = io.BytesIO()
        Image.open(f).convert("RGB").resize((2000, 3000), Image.Resampling.BICUBIC).save(out, "JPEG", quality=90)
        jpegs.append(out.getvalue())
    encoder = load_image_encoder("efficientnet-lite0", EncoderConfig(device="cpu", threads=2))
    full_ms, full = cpu_ms(lambda: [decode_image(d, "x", 40_000_000) for d in jpegs], len(jpegs))
    draft_ms, drafted = cpu_ms(lambda: [decode_image(d, "x", 40_000_000, draft_to=224) for d in jpegs], len(jpegs))
    full_prep, _ = cpu_ms(lambda: encoder.preprocess(full), len(jpegs))
    draft_prep, _ = cpu_ms(lambda: encoder.preprocess(drafted), len(jpegs))
    c = cosine(encoder.encode(full), encoder.encode(drafted))
    return [["full decode", f"{full_ms:.1f}", f"{full_prep:.1f}", "-"],
            ["draft_to=224", f"{draft_ms:.1f}", f"{draft_prep:.1f}", f"{c.mean():.5f} (min {c.min():.4f})"]]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=320, help="fashion photos per measurement (default %(default)s)")
    parser.add_argument("--int8", action="store_true", help="also static int8 graphs (about a minute to quantise)")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/photo-levers"))
    parser.add_argument("--only-runtime", action="store_true", help="only the image model runtimes")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"load average {Path('/proc/loadavg').read_text().split()[0]}")
    print(markdown_table(["image model runtime (EfficientNet-Lite0)", "CPU ms/photo", "speed-up", "cosine to ORT fp32, mean",
                          "min"], runtime_rows(args.photos, args.int8, args.work)))
    if not args.only_runtime:
        print()
        print(markdown_table(["colour descriptor", "CPU ms/photo", "speed-up", "output"], colour_rows(args.photos)))
        print()
        print(markdown_table(["2000x3000 JPEG", "decode CPU ms", "fit to 224 CPU ms", "vector cosine to full decode"],
                             draft_rows(20)))
    print(f"load average {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    main()
