"""``gleansr export``: turn a training checkpoint into a release file.

``--format mmedit`` (default unless OUT ends in ``.safetensors``) writes MMEditing's release
layout (``meta`` + ``state_dict`` with ``generator.*`` / ``discriminator.*``, legacy
``torch.save``), loadable by MMEditing and by ``gleansr`` (``load_glean``, ``--weights``,
``train --init``). ``--format safetensors`` writes the generator with its config in the metadata.
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
    parser.add_argument("--format", choices=("mmedit", "safetensors"),
                        help="default: safetensors for a .safetensors OUT, else mmedit")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace) -> int:
    from ..loading import export_release

    path = export_release(args.checkpoint, args.out, args.format, overwrite=args.overwrite)
    print(path)
    return 0
