"""The ``gleansr`` command line: one module per sub-command under ``gleansr.commands``.

Each command module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``,
and imports nothing heavy at module level. ``gleansr --help`` is answered from the table below
without importing any command; otherwise only the chosen command's module is imported, so help
and argument errors come back without loading PyTorch. A command module that fails to import is
an error naming the command, never a silently missing command.
User errors (:class:`gleansr.errors.GleanError`) become one line on stderr and exit code 2; files the
operating system refuses (:class:`~gleansr.errors.OutputError`, or any other ``OSError``: disk full,
read-only, a folder in the way) one line naming the file and what happened, and exit code 1.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import Sequence

from . import __version__
from .errors import GleanError, describe_os_error
from .tuning import keep_freed_memory_for_reuse

# NAME -> (module under gleansr.commands, one-line help); tests check it against each module.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "super-resolve the bundled sample glyphs with the bundled model and compare with bicubic"),
    "data": ("data", "build offline data sets (glyph images rendered from font files)"),
    "verify": ("verify", "check the models against the upstream MMEditing parity fixture (offline)"),
    "upscale": ("upscale", "super-resolve images (files, folders, globs) with a GLEAN model"),
    "models": ("models", "list the models: what each restores (domain, input size) and whether its weights are present"),
    "eval": ("eval", "evaluate a model on HR images (PSNR, SSIM, MAE; optional LPIPS/FID) with MMEditing's "
             "definitions"),
    "make-lr": ("make_lr", "Make LR images from HR images with MATLAB-style bicubic downscaling (as GLEAN was "
                "trained)."),
    "train": ("train", "Train a GLEAN model (presets' recipes or a config file); rerun the same command to resume."),
    "export": ("export", "Export a training checkpoint (or a run folder's latest) as an MMEditing .pth or a "
               ".safetensors file."),
    "bank": ("bank", "Train a StyleGAN2 latent bank on your own images, or sample one."),
    "convert": ("convert", "Convert a StyleGAN2 bank (MMGeneration .pth, rosinality .pt, NVIDIA .pkl) to "
                "safetensors."),
    "serve": ("serve", "serve a web page and an HTTP API for super-resolution (local, offline)"),
    "precision": ("precision", "show (and measure, or --refresh) what --precision auto picks for a model on this "
                  "machine"),
}


class CommandImportError(GleanError):
    """A command's module cannot be imported: a broken installation, not a user mistake."""


def load_command(name: str) -> ModuleType:
    """The module of command ``name``; CommandImportError saying why it cannot be imported."""
    module = f"gleansr.commands.{COMMANDS[name][0]}"
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
        raise CommandImportError(f"command {name!r} cannot be loaded ({module}: {type(exc).__name__}: {exc}); "
                                 "the installation is broken, reinstall gleansr") from exc


def _chosen(argv: Sequence[str]) -> str | None:
    """The sub-command named on the command line (the first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser, with every command listed and only ``command``'s module imported and wired
    (None: none imported, enough for ``gleansr --help``)."""
    parser = argparse.ArgumentParser(prog="gleansr", description="GLEAN large-factor super-resolution.")
    parser.add_argument("--version", action="version", version=f"gleansr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            mod = load_command(name)
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _chosen(argv)
    try:
        parser = build_parser(command if command in COMMANDS else None)
    except CommandImportError as exc:
        print(f"gleansr: error: {exc}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    keep_freed_memory_for_reuse()  # process-wide malloc tuning: the program's choice, made here
    try:
        return int(args._run(args) or 0)
    except GleanError as exc:
        print(f"gleansr: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the OS refused (OutputError: already the sentence): one line
        print(f"gleansr: error: {describe_os_error(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("gleansr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
