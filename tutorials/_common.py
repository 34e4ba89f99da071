"""Plumbing shared by the tutorials (quick mode, where figures go, data paths).
Nothing about the science lives here: each tutorial reads on its own.  (Parameter
vectors of MLPs for SciPy's L-BFGS come from :mod:`symref.model.params`.)

Environment variables
---------------------
``SYMREF_QUICK=1``
    quick mode: small data, few iterations (what CI runs); figures then go to
    a temporary folder unless ``SYMREF_FIGDIR`` is set, so the committed
    figures in ``tutorials/figures/`` are never overwritten by a quick run.
``--medium`` (command line) or ``SYMREF_MEDIUM=1``
    medium mode: sizes chosen so that each tutorial runs in about a minute or less and its
    numbers still support the text (the asserts of full mode hold, or the text states the
    medium bound); figures go to a temporary folder as in quick mode.
``SYMREF_FIGDIR=DIR``
    write the figures to DIR (created if needed), in either mode.
``SYMREF_DATA=DIR``
    where the real data live (default ``../shared/data`` next to the repository); the
    older name ``SYMREF_SHARED_DATA`` still works (``SYMREF_DATA`` wins when both are set).
    A tutorial that needs the data and does not find them prints
    :func:`missing_data_message`: where to get them (deepmd-kit's public water example)
    and the layout expected.

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


def data_dir(environ=None) -> Path:
    """Folder of the real data: ``$SYMREF_DATA``, else the older ``$SYMREF_SHARED_DATA``,
    else ``../shared/data`` next to the repository (absent in a bare clone)."""
    env = os.environ if environ is None else environ
    for key in ("SYMREF_DATA", "SYMREF_SHARED_DATA"):
        if env.get(key, "").strip():
            return Path(env[key].strip()).expanduser()
    return REPO.parent / "shared" / "data"


#: the real DFT data (``data_dir()`` at import; tests point it elsewhere to exercise the fallbacks)
SHARED_DATA = data_dir()
#: the layout a deepmd-kit "system" folder must have (one per ``data_k``)
SYSTEM_LAYOUT = ("type.raw", "type_map.raw", "set.*/coord.npy", "set.*/box.npy",
                 "set.*/energy.npy", "set.*/force.npy")


def missing_data_message(folder: Path, what: str = "water") -> str:
    """What to print when ``folder`` (a dataset under :data:`SHARED_DATA`) is absent:
    where the data come from and the layout a tutorial expects."""
    layout = ", ".join(SYSTEM_LAYOUT)
    return (f"NOTE: the {what} data were not found at {folder}. They are deepmd-kit's public "
            f"example data (the water example: examples/water/data in the deepmd-kit repository, "
            f"https://github.com/deepmodeling/deepmd-kit). To use them, set SYMREF_DATA=DIR "
            f"(default ../shared/data next to this repository) so that DIR/{folder.name}/data_0, "
            f"data_1, ... are deepmd-kit system folders, each holding {layout} "
            f"(positions in Å, energies in eV, forces in eV/Å).")
def _flag(name: str, environ=None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().lower() not in ("", "0", "false", "no")


def run_mode(argv=None, environ=None) -> str:
    """``"quick"``, ``"medium"`` or ``"full"``: ``SYMREF_QUICK=1`` wins, then ``--medium`` on
    the command line or ``SYMREF_MEDIUM=1``, else full."""
    argv = sys.argv[1:] if argv is None else argv
    if _flag("SYMREF_QUICK", environ):
        return "quick"
    if "--medium" in argv or _flag("SYMREF_MEDIUM", environ):
        return "medium"
    return "full"


MODE = run_mode()
QUICK = MODE == "quick"
MEDIUM = MODE == "medium"


def pick(quick, *rest):
    """``pick(quick, full)``: ``quick`` in quick mode, ``full`` otherwise (medium mode too);
    ``pick(quick, medium, full)``: one value per mode."""
    if len(rest) not in (1, 2):
        raise TypeError(f"pick takes 2 or 3 values (quick, [medium,] full), got {1 + len(rest)}")
    if QUICK:
        return quick
    return rest[0] if MEDIUM else rest[-1]


def _figure_dir() -> Path:
    if os.environ.get("SYMREF_FIGDIR"):
        d = Path(os.environ["SYMREF_FIGDIR"])
    elif QUICK or MEDIUM:
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
    print(f"{title}: {MODE.upper()} mode; figures go to {FIGDIR}")
