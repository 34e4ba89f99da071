r"""A bridge to deepmd-kit's own PyTorch models: same weights, same neighbours.

For comparing symref with deepmd-kit (cross-checks, benchmarks, porting another
code): nothing here computes a number of symref's; it prepares deepmd-kit's
inputs and calls deepmd-kit.  Needs the ``test`` extra (deepmd-kit, h5py) and torch.

* :func:`import_deepmd_pt` imports ``deepmd.pt``, with a stub for its compiled op
  library when that library was built against another torch (:data:`PT_WORKAROUND`).
* :func:`pt_model` is deepmd-kit's PyTorch model with a symref model's weights,
  moved through a ``.dp`` file written by :func:`symref.save_model`.
* :func:`forward_lower_inputs` / :func:`forward_lower_eval`: evaluate it through
  ``forward_lower`` on an extended system built from symref's O(N) neighbour
  list.  deepmd-kit's own ``forward`` builds its neighbour list from an
  nloc x nall distance matrix (121 GiB at 12 288 water atoms); ``forward_lower``
  is how LAMMPS runs deepmd-kit, and scales.

Extended system (deepmd-kit's names): ``extended_coord`` (nall x 3: the nloc
atoms as given, then every periodic image that is somebody's neighbour, once),
``extended_atype`` (nall), ``nlist`` (nloc x nnei, extended indices, -1 padded;
deepmd-kit splits it by type itself) and ``mapping`` (nall: the local atom of
each extended one; forces on images are added onto it).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

PT_WORKAROUND = r"""
deepmd-kit 3.2.0's wheel ships a compiled PyTorch op library built against
torch 2.11.0; `import deepmd.pt` runs deepmd/pt/cxx_op.py, which loads it and
raises RuntimeError ("The version of PyTorch used to compile this deepmd-kit
package is 2.11.0, but ... runtime ... 2.13.0") -- or OSError on a bad dlopen.
(Before that, on Linux wheels cxx_op.py also CDLL-loads MPICH's libmpi found
through the `mpich` package's metadata, and raises PackageNotFoundError without
it: `pip install mpich`.)

The se_e2_a + ener path is pure torch and never calls the custom ops when
deepmd.pt.cxx_op.ENABLE_CUSTOMIZED_OP is False.  So, only when a clean
`import deepmd.pt` in a *subprocess* fails with one of those errors
from cxx_op, we put a stub module into sys.modules before importing:

    stub = types.ModuleType("deepmd.pt.cxx_op")
    stub.ENABLE_CUSTOMIZED_OP = False
    sys.modules["deepmd.pt.cxx_op"] = stub
    import deepmd.pt

The probe runs in a subprocess so a failed import never leaves half-initialised
modules (or a half-loaded shared library) in this process.  deepmd.pt's model
classes also import `e3nn` (part of deepmd-kit's `torch` extra).
"""

#: how ``deepmd/pt/cxx_op.py`` fails when its compiled library cannot load: a torch version
#: mismatch (RuntimeError), a bad dlopen (OSError), or no ``mpich`` distribution whose libmpi
#: it could preload (PackageNotFoundError, raised by importlib.metadata)
_CXX_OP_ERRORS = ("RuntimeError", "OSError", "importlib.metadata.PackageNotFoundError",
                  "PackageNotFoundError")

_PT_STATE: dict = {}


def _probe_pt_import() -> tuple[bool, str]:
    """Try ``import deepmd.pt`` in a clean subprocess: (ok, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import deepmd.pt"],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    return proc.returncode == 0, proc.stderr


def import_deepmd_pt():
    """Import ``deepmd.pt`` (with the cxx_op stub when needed); raise if impossible.

    Returns the ``deepmd.pt`` module.  ``import_deepmd_pt.workaround`` (the
    attribute on this function) tells whether the stub was used.  Never skips
    silently: a failure raises ``RuntimeError`` with the reason.
    """
    if "module" in _PT_STATE:
        return _PT_STATE["module"]
    if "deepmd.pt" in sys.modules and "deepmd.pt.cxx_op" in sys.modules:
        mod = sys.modules["deepmd.pt"]
        _PT_STATE["module"] = mod
        import_deepmd_pt.workaround = getattr(sys.modules["deepmd.pt.cxx_op"],
                                              "_symref_stub", False)
        return mod
    ok, err = _probe_pt_import()
    used_stub = False
    if not ok:
        # the final exception of the traceback: "<ExcType>: message"
        exc_lines = [ln for ln in err.splitlines()
                     if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b", ln)]
        tail = exc_lines[-1] if exc_lines else (err.strip().splitlines() or ["(no stderr)"])[-1]
        cxx_problem = ("deepmd/pt/cxx_op.py" in err.replace(os.sep, "/")
                       and tail.startswith(_CXX_OP_ERRORS))
        if not cxx_problem:
            raise RuntimeError(
                "import deepmd.pt fails for a reason other than its compiled op library "
                f"(so the cxx_op workaround does not apply): {tail}\n{err[-3000:]}")
        stub = types.ModuleType("deepmd.pt.cxx_op")
        stub.ENABLE_CUSTOMIZED_OP = False
        stub.__all__ = ["ENABLE_CUSTOMIZED_OP"]
        stub._symref_stub = True
        stub.__doc__ = "symref stub: " + PT_WORKAROUND
        sys.modules["deepmd.pt.cxx_op"] = stub
        used_stub = True
    try:
        import deepmd.pt as mod
        import deepmd.pt.model.model  # noqa: F401  (the model classes; needs e3nn)
    except Exception as e:
        raise RuntimeError(
            "cannot import deepmd.pt" + (" even with the cxx_op stub" if used_stub else "")
            + f": {type(e).__name__}: {e}") from e
    _PT_STATE["module"] = mod
    import_deepmd_pt.workaround = used_stub
    return mod


import_deepmd_pt.workaround = None


def pt_model(model, workdir, device: str = "cpu"):
    """deepmd-kit's PyTorch model with the weights of the symref ``model``, on ``device``.

    The model goes through a ``.dp`` file (``workdir/model.dp``) written by
    :func:`symref.save_model` and read back by deepmd-kit's ``load_dp_model`` and
    ``BaseModel.deserialize``; returned in ``eval`` mode."""
    import_deepmd_pt()
    from deepmd.dpmodel.utils.serialization import load_dp_model
    from deepmd.pt.model.model import BaseModel as PTBaseModel

    from symref.io.model_file import save_model

    path = Path(workdir) / "model.dp"
    save_model(model, str(path))
    m = PTBaseModel.deserialize(load_dp_model(str(path))["model"]).to(device)
    m.eval()
    return m


def forward_lower_inputs(model, coord, atype, box) -> dict:
    """deepmd-kit's ``forward_lower`` inputs for one frame (module docstring), from
    symref's O(N) neighbour list of ``model``'s descriptor (rcut, sel).

    ``coord`` natoms x 3 Å, ``atype`` natoms, ``box`` 3 x 3 (cell vectors as rows).
    """
    from symref.fast.kernels.neighbors import build_neighbor_list_fast

    d = model.descriptor
    nl = build_neighbor_list_fast(coord, atype, box, d.rcut, d.sel)
    n = len(atype)
    real = nl.nlist >= 0  # nloc x nnei
    ci, cs = np.nonzero(real)
    j = nl.nlist[ci, cs]
    pos = coord[ci] + nl.rij[ci, cs]  # the neighbour image, as seen from its centre
    own = np.all(nl.shift[ci, cs] == 0.0, axis=1)  # image = the atom itself
    ext = np.full(real.shape, -1, dtype=np.int64)  # nloc x nnei
    ext[ci[own], cs[own]] = j[own]
    # one extended atom per (atom, image shift); the shift is a lattice vector
    key = np.concatenate([j[~own, None].astype(np.float64),
                          np.round(nl.shift[ci[~own], cs[~own]], 6)], axis=1)
    uniq, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    ext[ci[~own], cs[~own]] = n + inv.reshape(-1)
    images = pos[~own][first]  # nimg x 3
    mapping = np.concatenate([np.arange(n), uniq[:, 0].astype(np.int64)])  # nall
    return {"extended_coord": np.concatenate([coord, images]),
            "extended_atype": np.asarray(atype)[mapping], "nlist": ext, "mapping": mapping}


def forward_lower_eval(dp, inputs: dict, device: str = "cpu"):
    """A function returning energy, forces (folded onto the local atoms) and virial of
    deepmd-kit's PyTorch model ``dp`` through ``forward_lower`` on ``inputs``
    (:func:`forward_lower_inputs`), as NumPy float64 ``(energy (1,), forces nloc x 3,
    virial 3 x 3)``; ``device``: "cpu" or "cuda".  The tensors are made once, so the
    function can be timed."""
    import torch

    tens = {k: torch.tensor(v[None], device=device) for k, v in inputs.items()}
    nloc = inputs["nlist"].shape[0]
    mapping = torch.tensor(inputs["mapping"], device=device)

    def run():
        ret = dp.forward_lower(tens["extended_coord"], tens["extended_atype"], tens["nlist"],
                               tens["mapping"])
        fext = ret["extended_force"][0]  # nall x 3
        f = torch.zeros((nloc, 3), dtype=fext.dtype, device=device).index_add_(0, mapping, fext)
        if device == "cuda":
            torch.cuda.synchronize()
        return (ret["energy"].detach().cpu().numpy().reshape(-1)[:1],
                f.detach().cpu().numpy().astype(np.float64),
                ret["virial"].detach().cpu().numpy().reshape(3, 3))
    return run
