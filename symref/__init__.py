"""symref: a NumPy-first, Numba-accelerated reference for symmetry-preserving networks.

Public API::

    symref.build_model(config, seed)   # new se_e2_a/se_e2_r/se_e3/hybrid model, deepmd-kit config
    symref.load_model(path)            # deepmd-kit 3.x .dp / .yaml model file
    symref.save_model(model, path)     # written atomically, format from the suffix
    model.evaluate(coord, atype, box)  # energy, forces, virial, atom_energy, atom_virial
    symref.checks                      # finite-difference and symmetry verification toolkit
    symref.VectorCloudNet(output=...)  # VCNN for 2-D/3-D clouds with vector features: fit / predict

Units: Å, eV, eV/Å; cells have cell vectors as rows (deepmd-kit's box.npy layout).

The tree (each subpackage's docstring says what it holds and may import):
``reference/`` the NumPy math, read first; ``fast/`` its numba and numba-cuda twins;
``model/`` DeepPot and DeepTensor; ``io/`` files; ``train/`` losses, optimisers, fit
loops; ``checks/`` the verification toolkit; ``vcnn``, ``transport/``, ``ase``,
``lammps``, ``md``, ``modeldevi``, ``synthetic``, ``deepmd_kit``: applications and
adapters; ``cli``: the ``symref`` command.

This module is a front door: it may import anything, and nothing of the library
imports it (``symref._version`` holds the version).
"""
from symref._version import __version__
from symref.model.build import build_model, randomize_statistics
from symref.model.deeppot import DeepPot
from symref.vcnn import VectorCloudNet

__all__ = ["DeepPot", "VectorCloudNet", "build_model", "randomize_statistics", "load_model", "save_model",
           "__version__"]


# subpackages and modules loaded on first use (``symref.data`` is the npy-system module)
_LAZY_MODULES = {"checks": "symref.checks", "data": "symref.io.data", "transport": "symref.transport",
                 "synthetic": "symref.synthetic"}


def __getattr__(name):
    # io needs optional dependencies only when a file is actually read or written
    if name in ("load_model", "save_model"):
        from symref.io import model_file

        return getattr(model_file, name)
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(_LAZY_MODULES[name])
    raise AttributeError(f"module 'symref' has no attribute {name!r}")
