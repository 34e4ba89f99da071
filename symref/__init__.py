"""symref: a NumPy-first, Numba-accelerated reference for symmetry-preserving networks.

Public API::

    symref.build_model(config, seed)   # new se_e2_a + energy model from a deepmd-kit-style config
    symref.load_model(path)            # deepmd-kit 3.x .dp / .yaml model file
    symref.save_model(model, path)     # written atomically, format from the suffix
    model.evaluate(coord, atype, box)  # energy, forces, virial, atom_energy, atom_virial
    symref.checks                      # finite-difference and symmetry verification toolkit
    symref.VectorCloudNet(output=...)  # VCNN for 2-D/3-D clouds with vector features: fit / predict

Units: Å, eV, eV/Å; cells have cell vectors as rows (deepmd-kit's box.npy layout).
"""
from symref.model.build import build_model, randomize_statistics
from symref.model.deeppot import DeepPot
from symref.vcnn import VectorCloudNet

__version__ = "0.1.0"

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
