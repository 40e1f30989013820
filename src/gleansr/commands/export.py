"""``gleansr export``: turn a training checkpoint into a release file.

``--format mmedit`` (default unless OUT ends in ``.safetensors``) writes MMEditing's release
layout (``meta`` + ``state_dict`` with ``generator.*`` / ``discriminator.*``, legacy
``torch.save``), loadable by MMEditing and by ``gleansr`` (``load_glean``, ``--weights``,
``train --init``). ``--format safetensors`` writes the generator with its config in the metadata.
``--format onnx`` (default for a ``.onnx`` OUT) takes a zoo model name or any GLEAN file and writes
an ONNX model for ONNX Runtime (:mod:`gleansr.onnx.export`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export"
HELP = "Export a training checkpoint (or a run folder's latest) as an MMEditing .pth or a .safetensors file."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT_OR_RUN_DIR", type=Path,
                        help="a training checkpoint (last.pt) or a run folder")
    parser.add_argument("-o", "--out", metavar="OUT", type=Path, required=True, help="file to write")
    parser.add_argument("--format", choices=("mmedit", "safetensors", "onnx"),
                        help="default: safetensors for a .safetensors OUT, onnx for a .onnx OUT, else mmedit; "
                             "onnx also takes a zoo model name or any GLEAN file")
    parser.add_argument("--precision", choices=("fp32", "fp16"), default="fp32", help="onnx only (default: fp32)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    if args.format == "onnx" or (args.format is None and args.out.suffix.lower() == ".onnx"):
        from ..onnx.export import export_onnx

        done = export_onnx(str(args.checkpoint), args.out, precision=args.precision, overwrite=args.overwrite)
        print(f"{done.path} ({done.meta['name']}, {done.meta['precision']}, {done.meta['check_psnr_db']} dB "
              "against PyTorch float32 on the check input)")
        return 0
    from ..loading import export_release

    path = export_release(args.checkpoint, args.out, args.format, overwrite=args.overwrite)
    print(path)
    return 0
