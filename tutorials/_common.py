"""Plumbing shared by the tutorials (quick mode, where figures go, data paths).
Nothing about the science lives here: each tutorial reads on its own.  (Parameter
vectors of MLPs for SciPy's L-BFGS come from :mod:`symref.model.params`.)

Environment variables
---------------------
``SYMREF_QUICK=1``
    quick mode: small data, few iterations (what CI runs); figures then go to
    a temporary folder unless ``SYMREF_FIGDIR`` is set, so the committed
    figures in ``tutorials/figures/`` are never overwritten by a quick run.
``SYMREF_FIGDIR=DIR``
    write the figures to DIR (created if needed), in either mode.
``SYMREF_SHARED_DATA=DIR``
    where the real data live (default ``../shared/data`` next to the repository).

Full mode (no ``SYMREF_QUICK``) writes to ``tutorials/figures/``: the figures
shown in the README gallery.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # scripts and CI: no display; notebooks keep inline plots
    matplotlib.use("Agg")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: the real DFT data next to the repository (absent in a bare clone: tutorials say so);
#: ``SYMREF_SHARED_DATA`` points elsewhere (tests use it to exercise the fallbacks)
SHARED_DATA = Path(os.environ.get("SYMREF_SHARED_DATA") or REPO.parent / "shared" / "data")
QUICK = os.environ.get("SYMREF_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def pick(quick, full):
    """``quick`` in quick mode, ``full`` otherwise."""
    return quick if QUICK else full


def _figure_dir() -> Path:
    if os.environ.get("SYMREF_FIGDIR"):
        d = Path(os.environ["SYMREF_FIGDIR"])
    elif QUICK:
        d = Path(tempfile.mkdtemp(prefix="symref_tutorial_figures_"))
    else:
        d = HERE / "figures"
    d.mkdir(parents=True, exist_ok=True)
    return d


FIGDIR = _figure_dir()


def savefig(fig, name: str) -> Path:
    """Save ``fig`` as ``FIGDIR/name`` (PNG), close it, say where it went."""
    import matplotlib.pyplot as plt

    path = FIGDIR / name
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"figure written: {path}")
    return path


def mode_banner(title: str) -> None:
    print(f"{title}: {'QUICK' if QUICK else 'FULL'} mode; figures go to {FIGDIR}")
