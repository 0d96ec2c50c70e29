"""`vitrina export-onnx`: encoders as ONNX graphs, to run later without PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from vitrina.cli.common import config_from_args, print_lines
from vitrina.cli.output import print_json
from vitrina.encoders import DEFAULT_TEXT_MODEL
from vitrina.engine.errors import QueryError


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from vitrina.engine.build.export import export_models

    if not args.text_model and not args.image_model:
        raise QueryError("give --text-model and/or --image-model to export")
    precisions = ["fp32"] + (["int8"] if args.quantize == "int8" else []) + (["fp16"] if args.fp16 else [])
    exported = export_models(args.out, args.text_model, args.image_model, precisions, config_from_args(args).encoders)
    if args.json:
        print_json({"out": str(Path(args.out).resolve()), "models": exported})
    else:
        print_lines([f"Exported {item['role']} encoder {item['encoder']} ({item['dim']}-d) to {item['dir']} "
                     f"[{', '.join(f'{k}: {v}' for k, v in item['files'].items())}]" for item in exported])
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-onnx", help="export text and image encoders to ONNX (run later without PyTorch)")
    p.add_argument("--text-model", metavar="NAME|PATH", default=None,
                   help=f"a BERT-family text model ({DEFAULT_TEXT_MODEL}, a directory, ORG/NAME) or clip:...")
    p.add_argument("--image-model", metavar="NAME|PATH", default=None,
                   help="efficientnet-lite0, resnet50[=PATH], clip:ARCH=TAG|PATH or clip:DIR (CLIP also exports its text tower)")
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/text, DIR/image and, for CLIP, DIR/image-text")
    p.add_argument("--quantize", choices=("int8",), default=None, help="also write an int8 graph of the text model (CPU)")
    p.add_argument("--fp16", action="store_true", help="also write fp16 graphs (GPU)")
    p.add_argument("--device", default=None, help="where PyTorch traces the models (default: cpu)")
    p.add_argument("--offline", action="store_true", help="never contact a model hub")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    p.set_defaults(func=cmd_export_onnx, backend="torch", device="cpu")
