"""Environment for the subprocesses the tests start: they import the checkout under test.

A child Python (an ``mpiexec`` rank, the LAMMPS worker, ``python -c ...``) does not
inherit pytest's ``sys.path``.  Started outside the repository, it imports whatever
``symref`` its own path finds first -- for example the bare ``site-packages/symref``
folder (numba cache files only) that ``pip install -e`` leaves behind after a plain
``pip install .`` wrote numba caches there, which Python then imports as an empty
namespace package.  :func:`checkout_env` puts the repository first on ``PYTHONPATH``.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def checkout_env(env=None, **extra) -> dict:
    """``env`` (default: this process's environment) plus ``extra``, with the
    repository root first on ``PYTHONPATH``."""
    out = dict(os.environ if env is None else env, **extra)
    out["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), out.get("PYTHONPATH")]))
    return out
