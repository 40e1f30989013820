"""Where the upstream parity fixture lives: one rule for ``gleansr verify`` and the test suite.

The fixture (``reference/fixture/``: the script that regenerates upstream's checkpoint, its input
and upstream's outputs) is project data kept in a ``shared/`` folder beside the checkout, not in
the package: a pip install has none, so ``verify`` there needs ``--fixture`` or ``GLEANSR_SHARED``.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

FIXTURE = Path("reference") / "fixture"
FIXTURE_SCRIPT = "make_fixture_checkpoint.py"


def checkout() -> Path:
    """The folder the package was imported from, two levels up (``<checkout>/src/gleansr``):
    the repository root for a checkout or an editable install."""
    return Path(__file__).resolve().parents[2]


def _origin(repo: Path) -> Path | None:
    """The local repository ``repo`` was cloned from (a scratch clone keeps finding shared/), if any."""
    if not (repo / ".git").exists():
        return None
    try:
        url = subprocess.run(["git", "-C", str(repo), "config", "remote.origin.url"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(url).resolve() if url and Path(url).is_dir() else None


def shared_candidates(repo: Path | None = None) -> list[Path]:
    """The ``shared/`` folders looked at, in order: $GLEANSR_SHARED; ``shared/`` beside the checkout
    (``repo``, default :func:`checkout`); beside the repositories it was cloned from (up to three
    clones back); ``../shared``."""
    if os.environ.get("GLEANSR_SHARED"):
        return [Path(os.environ["GLEANSR_SHARED"])]
    repo = checkout() if repo is None else repo
    found = [repo.parent / "shared"]
    for _ in range(3):  # a clone of a clone (a CI checkout of a scratch clone) still finds it
        repo = _origin(repo)
        if repo is None:
            break
        found.append(repo.parent / "shared")
    found.append(Path.cwd().parent / "shared")
    return list(dict.fromkeys(found))


def find_shared(repo: Path | None = None) -> Path:
    """The first existing candidate of :func:`shared_candidates` (else the first, for messages)."""
    candidates = shared_candidates(repo)
    return next((c for c in candidates if c.is_dir()), candidates[0])


def find_fixture(repo: Path | None = None) -> Path | None:
    """The fixture folder, or None when no candidate holds it."""
    return next((c / FIXTURE for c in shared_candidates(repo) if (c / FIXTURE / FIXTURE_SCRIPT).is_file()), None)


def missing_fixture_message(looked: list[Path]) -> str:
    """One line: where it was looked for and how to get it."""
    where = ", ".join(str(p) for p in looked)
    return (f"no parity fixture found (looked in {where}); it is project data, not part of the package: in a "
            "gleansr checkout with its shared/ folder beside it, it is found by itself; elsewhere pass "
            "--fixture SHARED/reference/fixture or set GLEANSR_SHARED=SHARED")
