"""ONNX Runtime encoders: run models exported by `vitrina export-onnx` without importing PyTorch.

An exported model directory holds:
  vitrina_onnx.json     OnnxModelInfo: what the model is, the encoder it reproduces, its inputs
  model.onnx            fp32 graph: inputs -> pooled, L2-normalised embedding ("embedding")
  model.int8.onnx       optional: int8 dynamic quantisation (text, CPU)
  model.fp16.onnx       optional: fp16 weights (GPU)
  tokenizer.json        text models: a `tokenizers` tokenizer (no transformers needed)
Image graphs take uint8 pixels, N x size x size x 3; scaling and mean/std are inside the graph.
"""

from __future__ import annotations

import ctypes.util
import hashlib
import html
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from vitrina.encoders.base import l2_normalize
from vitrina.encoders.config import EncoderConfig
from vitrina.encoders.errors import EncoderError
from vitrina.encoders.image_io import fit_square
from vitrina.encoders.files import mismatches, read_checksums
from vitrina.errors import Param

META_FILE = "vitrina_onnx.json"
EXPORT_FORMAT = 1
OUTPUT_NAME = "embedding"
SMOOTH_ALPHA = 0.75  # int8 text recipe (encoders.onnx_export); measured on MiniLM: 0.5 -> cosine 0.988, 0.75 -> 0.997, 0.9 -> 0.996
log = logging.getLogger("vitrina")
_INT8_LOCK = threading.Lock()  # making an int8 catalog graph (encoders.openvino_int8)


@dataclass
class OnnxModelInfo:
    """The description of an exported encoder, saved beside its graphs."""

    modality: str  # "text" or "image"
    kind: str  # "transformers", "clip-text", "cnn" or "clip-image"
    encoder: str  # name of the encoder the graph reproduces; index manifests record the same name
    dim: int
    files: dict[str, str]  # precision -> graph file
    inputs: list[str]
    max_length: int | None = None  # text: tokens per input, special tokens included
    fixed_length: bool = False  # text: pad every input to max_length (CLIP's causal mask is fixed)
    pad_id: int = 0
    text_clean: str | None = None  # "clip": unescape HTML entities as open_clip does
    image_size: int | None = None
    image_resize: str | None = None  # "pad-square" (white square, resize) or "shortest-crop" (resize, centre crop)
    source: dict[str, Any] = field(default_factory=dict)  # spec, architecture and settings, for people
    format: int = EXPORT_FORMAT

    def save(self, directory: Path) -> None:
        (directory / META_FILE).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "OnnxModelInfo":
        path = Path(directory) / META_FILE
        if not path.is_file():
            raise EncoderError(f"{directory} is not an exported Vitrina ONNX model (no {META_FILE}); make one with `vitrina export-onnx`")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise EncoderError(f"{path} is damaged: {exc}") from None
        if data.get("format") != EXPORT_FORMAT:
            raise EncoderError(f"{path} has export format {data.get('format')}; this Vitrina reads {EXPORT_FORMAT}. Export again.")
        try:
            info = cls(**data)
        except TypeError as exc:
            raise EncoderError(f"{path} is damaged: {exc}") from None
        missing = [f for f in info.files.values() if not (Path(directory) / f).is_file()]
        if missing:
            raise EncoderError(f"{directory}: {missing[0]} is missing; export the model again")
        return info


def check_export(path: Path, unchecked_ok: bool = False) -> str | None:
    """Why the export at `path` cannot be trusted (no checksums, or a file that differs from them), or None.
    unchecked_ok: an export without checksums (made by an older Vitrina) passes."""
    recorded = read_checksums(path)
    if not recorded:
        return None if unchecked_ok else "it has no checksums (exported by an older Vitrina)"
    bad = mismatches(path, recorded)
    if bad:
        name, _, found = bad[0]
        return f"{path / name} is {'missing' if found == 'missing' else 'damaged (its sha256 changed since export)'}"
    return None


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "vitrina" / "onnx"


def cache_entry(modality: str, encoder_name: str, config: EncoderConfig) -> Path:
    """Where the ONNX cache keeps the export of an encoder (whether or not it is there)."""
    recipe = f"{EXPORT_FORMAT}|int8:smooth{SMOOTH_ALPHA}+ffn-fp32"  # a new recipe exports again
    key = hashlib.sha256(f"{modality}|{encoder_name}|{recipe}".encode()).hexdigest()[:20]
    return (config.onnx_cache or default_cache_dir()) / key


def openvino_cache(config: EncoderConfig) -> Path:
    """Where OpenVINO keeps compiled graphs: beside the ONNX exports."""
    return (config.onnx_cache or default_cache_dir()) / "openvino"


def is_onnx_dir(spec: str | Path) -> bool:
    """Whether a model spec names an exported model directory."""
    return (Path(spec).expanduser() / META_FILE).is_file()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def execution_providers(config: EncoderConfig) -> list[Any]:
    """TensorRT (when its library is installed) and CUDA before the CPU, unless the CPU was asked for.

    "cuda:N" picks GPU N; onnxruntime falls back to the next provider when one cannot start.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    _, _, index = (config.device or "").partition(":")
    options = {"device_id": int(index)} if index.isdigit() else {}
    chosen: list[Any] = []
    if config.wants_gpu:
        if "TensorrtExecutionProvider" in available and ctypes.util.find_library("nvinfer"):
            chosen.append(("TensorrtExecutionProvider", options))
        if "CUDAExecutionProvider" in available:
            chosen.append(("CUDAExecutionProvider", options))
    if config.device and config.device.startswith("cuda") and not chosen:
        raise EncoderError("{device} was asked for, but this onnxruntime has no CUDA provider; install vitrina[gpu]",
                           device=Param("device", "cuda"))
    return chosen + ["CPUExecutionProvider"]


def choose_precision(info: OnnxModelInfo, config: EncoderConfig, on_gpu: bool) -> str:
    """The graph to run: the one asked for; else fp16 on a GPU, int8 for text queries on the CPU, else fp32.

    Catalog text stays fp32 on the CPU: int8 on both sides keeps nDCG but reshuffles near-ties (Home
    Depot top-10 overlap with PyTorch 0.945), int8 queries on fp32 products keep 0.97 of the top 10.
    """
    if config.precision != "auto":
        if config.precision not in info.files:
            have = ", ".join(sorted(info.files))
            raise EncoderError(f"this export has no {config.precision} graph (it has: {have}); export it with that precision")
        return config.precision
    preferred = "fp16" if on_gpu else ("int8" if info.modality == "text" and not config.catalog else "fp32")
    return preferred if preferred in info.files else "fp32"


def openvino_precision(info: OnnxModelInfo, config: EncoderConfig, on_gpu: bool) -> str | None:
    """"bf16" or "fp32" when OpenVINO runs this graph (see EncoderConfig.runtime), None for onnxruntime."""
    from vitrina.encoders.openvino_runtime import cpu_has_bf16, openvino_installed

    if config.runtime == "onnxruntime" or on_gpu:
        return None
    if config.runtime == "auto":
        wanted = info.modality == "text" and config.catalog and config.precision == "auto"
        return "bf16" if wanted and openvino_installed() and cpu_has_bf16() else None
    if config.precision == "int8" and info.modality == "text":
        return "int8" if config.catalog else None  # catalog: an NNCF graph (openvino_int8); queries: ORT's int8 graph
    if config.precision not in ("auto", "fp32"):
        raise EncoderError(f"the OpenVINO runtime runs fp32 graphs (bf16 where the CPU has it) and int8 catalog text, "
                           f"not {config.precision} {'catalog ' if config.catalog else ''}{info.modality}; use precision "
                           "auto or fp32, or the onnxruntime runtime")
    return "bf16" if config.precision == "auto" and cpu_has_bf16() else "fp32"


class OnnxEncoder:
    """An exported graph in an onnxruntime session; subclasses turn inputs into its feeds."""

    def __init__(self, model_dir: str | Path, config: EncoderConfig) -> None:
        import onnxruntime as ort

        self.model_dir = Path(model_dir).expanduser()
        self.info = OnnxModelInfo.load(self.model_dir)
        self.config = config
        self.modality = self.info.modality
        providers = execution_providers(config)
        self.precision = choose_precision(self.info, config, on_gpu=len(providers) > 1)
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.threads or usable_cores()
        options.inter_op_num_threads = 1
        if not config.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if not config.prepack:
            options.add_session_config_entry("session.disable_prepacking", "1")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        path = self.model_dir / self.info.files[self.precision]
        openvino = openvino_precision(self.info, config, on_gpu=len(providers) > 1)
        try:
            if openvino is not None:
                from vitrina.encoders.openvino_runtime import OpenVinoSession, cpu_has_bf16

                path = self.model_dir / self.info.files["fp32"]
                self.streams = options.intra_op_num_threads if config.catalog else 1  # bulk: a batch per core at once
                self.precision = openvino
                if openvino == "int8":
                    from vitrina.encoders.openvino_int8 import cached_int8_graph

                    path = cached_int8_graph(self.model_dir, config)  # None: made from the first catalog texts
                self.session = None if path is None else OpenVinoSession(
                    path, options.intra_op_num_threads, openvino == "bf16" or (openvino == "int8" and cpu_has_bf16()), self.streams,
                    openvino_cache(config))
            elif config.optimised_cache:
                from vitrina.encoders.onnx_optimised import optimised_session

                recorded = (read_checksums(self.model_dir) or {}).get(path.name)
                self.session = optimised_session(path, options, providers, config.onnx_cache or default_cache_dir(),
                                                 recorded and f"{recorded}|{path.stat().st_size}")
            else:
                self.session = ort.InferenceSession(str(path), options, providers=providers)
        except EncoderError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EncoderError(f"could not load {path}: {exc}") from exc
        if self.session is None:  # an int8 graph still to make: OpenVINO runs it
            from vitrina.encoders.openvino_runtime import PROVIDER

            self.providers, self.on_gpu, self.device_id = [PROVIDER], False, 0
            return
        self.providers = self.session.get_providers()
        self.on_gpu = openvino is None and self.providers[0] != "CPUExecutionProvider"
        self.device_id = int(dict(self.session.get_provider_options().get(self.providers[0], {})).get("device_id", 0) or 0)
        graph_inputs = [i.name for i in self.session.get_inputs()]
        if graph_inputs != self.info.inputs:
            raise EncoderError(f"{path}: graph inputs {graph_inputs} differ from {META_FILE} {self.info.inputs}; export again")

    @property
    def name(self) -> str:
        return self.info.encoder

    @property
    def dim(self) -> int:
        return self.info.dim

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The graph's embeddings for one batch of feeds; on a GPU through IO binding."""
        if not self.on_gpu:
            return self.session.run([OUTPUT_NAME], feeds)[0]
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        binding.bind_output(OUTPUT_NAME, "cuda", self.device_id)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def run_all(self, feeds: Iterable[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """The embeddings of several batches, in order (OpenVINO runs them a batch per core at once)."""
        if hasattr(self.session, "run_all"):
            return self.session.run_all(feeds)
        return [self.run(f) for f in feeds]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, precision={self.precision}, providers={self.providers})"


class OnnxTextEncoder(OnnxEncoder):
    """Tokenises with `tokenizers`, batches texts of similar length together, runs the graph."""

    def __init__(self, model_dir: str | Path, config: EncoderConfig) -> None:
        super().__init__(model_dir, config)
        from tokenizers import Tokenizer

        if self.modality != "text":
            raise EncoderError(f"{self.model_dir} holds an {self.modality} model, not a text model")
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.max_length = self.info.max_length  # CLIP's graph takes exactly this many tokens
        if not self.info.fixed_length and config.max_text_length:
            self.max_length = min(config.max_text_length, self.info.max_length)
        self.tokenizer.enable_truncation(self.max_length)

    def _clean(self, text: str) -> str:
        if self.info.text_clean == "clip":  # open_clip unescapes HTML entities twice before tokenising
            return html.unescape(html.unescape(text)).strip()
        return text

    def tokenize(self, texts: Sequence[str]) -> list[Any]:
        """The texts' encodings (ids, masks, types; not their character offsets, which nothing here reads)."""
        encode = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)  # tokenizers >= 0.20
        return encode([self._clean(t) for t in texts])

    def _feeds(self, encodings: Sequence[Any]) -> dict[str, np.ndarray]:
        width = self.max_length if self.info.fixed_length else max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.info.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for i, e in enumerate(encodings):
            n = len(e.ids)
            ids[i, :n], mask[i, :n], types[i, :n] = e.ids, e.attention_mask, e.type_ids
        all_feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: all_feeds[name] for name in self.info.inputs}

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        """Embeddings in input order; inputs are run longest first in batches of similar length."""
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        if not len(batch):
            return out
        if self.session is None:
            self._load_int8(batch)
        encodings = self.tokenize(list(batch))
        order = np.argsort([-len(e.ids) for e in encodings], kind="stable")
        step = self.config.batch_size
        batches = [order[start : start + step] for start in range(0, len(order), step)]
        vectors = self.run_all(self._feeds([encodings[i] for i in rows]) for rows in batches)
        for rows, batch_vectors in zip(batches, vectors):
            out[rows] = batch_vectors
        return l2_normalize(out)

    def _load_int8(self, texts: Sequence[str]) -> None:
        """The OpenVINO int8 graph, quantised first on a sample of `texts` (the first catalog texts) when not cached."""
        from vitrina.encoders.openvino_int8 import int8_graph
        from vitrina.encoders.openvino_runtime import OpenVinoSession, cpu_has_bf16

        def to_feeds(sample: list[str]) -> list[dict[str, np.ndarray]]:
            return [self._feeds([e]) for e in self.tokenize(sample)]

        with _INT8_LOCK:  # callers on several threads make it once
            if self.session is None:
                path = int8_graph(self.model_dir, self.config, list(texts), to_feeds)
                self.session = OpenVinoSession(path, self.config.threads or usable_cores(), cpu_has_bf16(), self.streams,
                                               openvino_cache(self.config))


def resize_shortest_and_crop(img: Image.Image, size: int) -> Image.Image:
    """torchvision's Resize(size) then CenterCrop(size) on a PIL image, as CLIP preprocesses."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


class OnnxImageEncoder(OnnxEncoder):
    """Resizes images with PIL into uint8 arrays (`preprocess`, thread-safe) and runs the graph on them."""

    def __init__(self, model_dir: str | Path, config: EncoderConfig) -> None:
        super().__init__(model_dir, config)
        if self.modality != "image":
            raise EncoderError(f"{self.model_dir} holds a {self.modality} model, not an image model")

    def preprocess(self, images: Sequence[Image.Image]) -> np.ndarray:
        """uint8 pixels, N x size x size x 3, ready for `encode_pixels`."""
        size = int(self.info.image_size or 224)
        out = np.empty((len(images), size, size, 3), dtype=np.uint8)
        for i, img in enumerate(images):
            img = img if img.mode == "RGB" else img.convert("RGB")  # convert() copies even an RGB image
            if self.info.image_resize == "shortest-crop":
                img = resize_shortest_and_crop(img, size)
            else:
                img = fit_square(img, size)
            out[i] = np.asarray(img, dtype=np.uint8)
        return out

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        out = np.empty((len(pixels), self.dim), dtype=np.float32)
        step = self.config.batch_size
        for start in range(0, len(pixels), step):
            out[start : start + step] = self.run({"pixels": pixels[start : start + step]})
        return l2_normalize(out)

    def encode(self, batch: Sequence[Image.Image]) -> np.ndarray:
        if not len(batch):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(self.preprocess(batch))


def load_onnx_encoder(model_dir: str | Path, config: EncoderConfig, modality: str | None = None) -> OnnxEncoder:
    """The text or image encoder of an exported model directory; `modality` refuses the other kind. Image
    graphs run on OpenVINO where `config.runtime` picks it (encoders.openvino_runtime)."""
    info = OnnxModelInfo.load(Path(model_dir).expanduser())
    if modality and info.modality != modality:
        raise EncoderError(f"{model_dir} holds an exported {info.modality} model; a {modality} model is needed here")
    if info.modality == "image":
        from vitrina.encoders.openvino_image import OpenVinoImageEncoder, wants_openvino

        if wants_openvino(config, gpu_provider=config.wants_gpu and len(execution_providers(config)) > 1):
            return OpenVinoImageEncoder(model_dir, config)
    return (OnnxTextEncoder if info.modality == "text" else OnnxImageEncoder)(model_dir, config)
