r"""deepmd-kit as the reference: build models in deepmd-kit and evaluate them with its backends.

A helper module for the tests (not itself collected by pytest).  Everything
here calls deepmd-kit's own code; nothing of symref's math is used (only
:func:`symref.deepmd_kit.import_deepmd_pt`, which imports ``deepmd.pt``), so the
numbers are an independent reference for symref's.

Inputs (all functions): ``model`` is a deepmd-kit serialized model dict
(``model.serialize()``), a file wrapper ``{"model": {...}, ...}`` as returned
by ``load_dp_model``, or a path to a ``.dp``/``.yaml`` file; ``coord`` is
(nf, natoms, 3) or (nf, 3*natoms) Å; ``atype`` (natoms,) or (nf, natoms);
``box`` (nf, 9) / (nf, 3, 3) with cell vectors as rows, or ``None`` (no PBC).
Float64 throughout.

Outputs (numpy, float64), with the same keys and shapes as
``symref.DeepPot.evaluate``:

=============== ==================== ==========================================
key             shape                meaning
=============== ==================== ==========================================
``energy``      (nf,)                E = sum_i atom_energy_i
``atom_energy`` (nf, natoms)         fitting output + bias_atom_e + out_bias
``forces``      (nf, natoms, 3)      -dE/dx (PyTorch backend only)
``virial``      (nf, 3, 3)           W[a, b] = -sum_pairs g_a r_b, g = dE/dr_ji
``atom_virial`` (nf, natoms, 3, 3)   per-atom share of W (PyTorch backend only)
=============== ==================== ==========================================

deepmd-kit conventions worth knowing (read from deepmd-kit 3.2.0's source and
checked numerically by tests/test_io.py):

* virial layout: deepmd's 9-vector is row-major ``[a, b]`` with ``a`` the
  derivative (force) component and ``b`` the coordinate component:
  ``virial = sum_k F_k (x) x_k`` over extended atoms.
* atom_virial (``do_atomic_virial=True``): extended atom ``k`` gets
  ``-sum_i dE_i/dx_k (x) (x_k - x_i)`` -- each pair (centre i, neighbour j)
  is credited to the *neighbour* j, with ``r_ji = x_j - x_i`` -- and ghost
  images are folded onto their local atom.  Sums to ``virial``.
* neighbour list (``deepmd.dpmodel.utils.nlist``): coordinates are first
  wrapped into the cell, periodic images added (``ceil(rcut / face distance)``
  cells each way), then for each centre the ``sum(sel)`` nearest atoms of any
  type are kept (self excluded), those with r > rcut dropped (r == rcut kept,
  its switch is 0), and the list split by neighbour type into ``sel[t]`` slots,
  ascending distance inside each type, padded with -1.  Model-level
  ``pair_exclude_types`` are removed from the nlist *after* this (slots set to
  -1 in place, no re-packing).
* environment row of a padded slot is 0 *before* normalisation, so after it it
  is ``-davg/dstd`` (not zero) and still feeds the embedding net; rows of
  descriptor-level ``exclude_types`` pairs are zeroed *after* normalisation.
* energy of atom i: ``fit_{t_i}(D_i) + bias_atom_e[t_i] + out_bias[0, t_i, 0]``,
  zeroed for ``atom_exclude_types``.

The PyTorch backend needs a workaround in this environment, see
:func:`import_deepmd_pt`.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

__all__ = [
    "make_deepmd_model_dict",
    "as_model_dict",
    "dp_eval",
    "pt_eval",
    "dp_neighbor_list",
    "dp_descriptor",
    "import_deepmd_pt",
    "PT_WORKAROUND",
    "run_dp",
]


def run_dp(argv, cwd, timeout: float = 900.0) -> str:
    """Run deepmd-kit's command line (``dp ARGV...``, e.g. ``["--pt", "train", ...]``) in a
    subprocess in folder ``cwd``, through :func:`import_deepmd_pt` (so the cxx_op stub
    applies when the compiled ops do not load); one torch thread.  Returns its output;
    a nonzero exit raises RuntimeError with the output's tail."""
    import subprocess
    import sys

    code = ("import sys; from symref.deepmd_kit import import_deepmd_pt; import_deepmd_pt(); "
            "from deepmd.main import main; main(sys.argv[1:])")
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DP_INTRA_OP_PARALLELISM_THREADS": "1",
           "DP_INTER_OP_PARALLELISM_THREADS": "1", "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"dp {' '.join(map(str, argv))} failed ({proc.returncode}):\n"
                           + out[-4000:])
    return out

# ----------------------------------------------------------------- inputs
def as_model_dict(model) -> dict:
    """The bare ``model.serialize()`` dict from a dict, a file wrapper or a model file path."""
    if isinstance(model, (str, os.PathLike)):
        from deepmd.dpmodel.utils.serialization import load_dp_model

        model = load_dp_model(str(model))
    if not isinstance(model, dict):
        raise TypeError(f"expected a model dict or a path, got {type(model).__name__}")
    if "@class" not in model and isinstance(model.get("model"), dict):
        model = model["model"]
    return copy.deepcopy(model)


def _inputs(coord, atype, box):
    coord = np.asarray(coord, dtype=np.float64)
    if coord.ndim == 2 and coord.shape[1] % 3 == 0 and coord.shape[1] != 3:
        coord = coord.reshape(coord.shape[0], -1, 3)
    elif coord.ndim == 2:  # a single frame (natoms, 3)
        coord = coord[None]
    if coord.ndim != 3 or coord.shape[2] != 3:
        raise ValueError(f"coord must be (nf, natoms, 3), got {coord.shape}")
    nf, natoms, _ = coord.shape
    atype = np.asarray(atype, dtype=np.int64)
    if atype.ndim == 1:
        atype = np.tile(atype[None], (nf, 1))
    if atype.shape != (nf, natoms):
        raise ValueError(f"atype must be ({natoms},) or ({nf}, {natoms}), got {atype.shape}")
    if box is not None:
        box = np.asarray(box, dtype=np.float64).reshape(-1, 9)
        if box.shape[0] == 1 and nf > 1:
            box = np.tile(box, (nf, 1))
        if box.shape[0] != nf:
            raise ValueError(f"box must be ({nf}, 9), got {box.shape}")
    return coord, atype, box


# ----------------------------------------------------------------- model construction
def make_deepmd_model_dict(
    type_one_side: bool,
    seed: int,
    sel,
    neuron,
    axis_neuron: int,
    fitting_neuron,
    rcut: float,
    rcut_smth: float,
    exclude_types=(),
    *,
    type_map=None,
    resnet_dt: bool = False,
    fitting_resnet_dt: bool = True,
    precision: str = "float64",
    atom_exclude_types=(),
    pair_exclude_types=(),
    stats: str = "slot",
    activation_function: str = "tanh",
    fitting_activation_function: str | None = None,
) -> dict:
    """A se_e2_a + ener model built by deepmd-kit, with non-trivial statistics.

    The model comes from ``deepmd.dpmodel.model.model.get_model`` (deepmd-kit's
    own random initialisation, seeded), then gets:

    * ``davg`` ~ N(0, 0.1²) and ``dstd`` ~ U[0.5, 2], shape (ntypes, nnei, 4).
      Rotational invariance needs ``davg[..., 1:] = 0`` and the three
      direction components to share one ``dstd`` (deepmd-kit's own statistics
      have this form), so:

      - ``stats="slot"`` (default): per (centre type, slot) values of
        ``davg[..., 0]``, ``dstd[..., 0]`` and ``dstd[..., 1:]``; slot order
        inside a type block then matters -- a strict test of the neighbour
        ordering -- and the model stays rotation invariant;
      - ``stats="type"``: one value per (centre type, neighbour type) block,
        exactly the structure deepmd-kit's statistics produce;
      - ``stats="full"``: every entry independent -- NOT rotation invariant
        (use only to test the normalisation of each component).
    * ``bias_atom_e`` (ntypes, 1) and ``out_bias`` (1, ntypes, 1): distinct
      values per type (≈ -1, -2, ... and ≈ 0.3, 0.6, ...); ``out_std`` ∈ [0.5, 1.5].

    ``activation_function`` is the descriptor's (and the fitting net's unless
    ``fitting_activation_function`` is given).

    Returns ``model.serialize()`` (float64 arrays unless ``precision`` says otherwise).
    """
    from deepmd.dpmodel.model.model import get_model

    sel = [int(s) for s in sel]
    ntypes = len(sel)
    if type_map is None:
        type_map = ["O", "H", "C", "N", "S", "P"][:ntypes] if ntypes <= 6 else \
            [f"X{i}" for i in range(ntypes)]
    config = {
        "type_map": list(type_map),
        "descriptor": {
            "type": "se_e2_a",
            "sel": sel,
            "rcut": float(rcut),
            "rcut_smth": float(rcut_smth),
            "neuron": [int(n) for n in neuron],
            "axis_neuron": int(axis_neuron),
            "resnet_dt": bool(resnet_dt),
            "type_one_side": bool(type_one_side),
            "exclude_types": [[int(a), int(b)] for a, b in exclude_types],
            "precision": precision,
            "activation_function": activation_function,
            "seed": int(seed),
        },
        "fitting_net": {
            "type": "ener",
            "neuron": [int(n) for n in fitting_neuron],
            "resnet_dt": bool(fitting_resnet_dt),
            "precision": precision,
            "activation_function": fitting_activation_function or activation_function,
            "seed": int(seed) + 1,
        },
        "atom_exclude_types": [int(t) for t in atom_exclude_types],
        "pair_exclude_types": [[int(a), int(b)] for a, b in pair_exclude_types],
    }
    model = get_model(copy.deepcopy(config))
    rng = np.random.default_rng(seed + 12345)
    nnei = sum(sel)
    desc = model.atomic_model.descriptor
    dt = np.asarray(desc.davg).dtype
    if stats == "slot":
        davg = np.zeros((ntypes, nnei, 4))
        davg[..., 0] = rng.normal(scale=0.1, size=(ntypes, nnei))
        dstd = np.empty((ntypes, nnei, 4))
        dstd[..., 0] = rng.uniform(0.5, 2.0, size=(ntypes, nnei))
        dstd[..., 1:] = rng.uniform(0.5, 2.0, size=(ntypes, nnei, 1))
    elif stats == "full":
        davg = rng.normal(scale=0.1, size=(ntypes, nnei, 4))
        dstd = rng.uniform(0.5, 2.0, size=(ntypes, nnei, 4))
    elif stats == "type":
        davg = np.zeros((ntypes, nnei, 4))
        dstd = np.ones((ntypes, nnei, 4))
        off = np.concatenate([[0], np.cumsum(sel)])
        for ti in range(ntypes):
            for tj in range(ntypes):
                blk = slice(off[tj], off[tj + 1])
                davg[ti, blk, 0] = rng.normal(scale=0.1)
                dstd[ti, blk, 0] = rng.uniform(0.5, 2.0)
                dstd[ti, blk, 1:] = rng.uniform(0.5, 2.0)
    else:
        raise ValueError(f"stats must be 'slot', 'type' or 'full', got {stats!r}")
    desc.set_stat_mean_and_stddev(davg.astype(dt), dstd.astype(dt))
    fitting = model.atomic_model.fitting_net
    bias_atom_e = -(np.arange(ntypes) + 1.0) + rng.uniform(-0.1, 0.1, size=ntypes)
    fitting["bias_atom_e"] = bias_atom_e.reshape(ntypes, 1).astype(
        np.asarray(fitting["bias_atom_e"]).dtype)
    am = model.atomic_model
    out_bias = 0.3 * (np.arange(ntypes) + 1.0) + rng.uniform(-0.05, 0.05, size=ntypes)
    am["out_bias"] = out_bias.reshape(1, ntypes, 1).astype(np.asarray(am["out_bias"]).dtype)
    am["out_std"] = rng.uniform(0.5, 1.5, size=(1, ntypes, 1)).astype(
        np.asarray(am["out_std"]).dtype)
    return model.serialize()


# ----------------------------------------------------------------- NumPy backend
def _dp_model(model):
    from deepmd.dpmodel.model.base_model import BaseModel
    import deepmd.dpmodel.model.model  # noqa: F401  (registers the model classes)

    return BaseModel.deserialize(as_model_dict(model))


def dp_eval(model, coord, atype, box=None) -> dict:
    """Energy and atomic energies from deepmd-kit's NumPy backend (``deepmd.dpmodel``).

    Uses ``EnergyModel.call(coord, atype, box)``, which wraps the coordinates
    into the cell, builds the extended (ghost) coordinates and the typed
    neighbour list (see :func:`dp_neighbor_list`), applies model-level
    ``pair_exclude_types`` to the nlist and runs ``call_lower``.  The NumPy
    backend returns no forces or virials in deepmd-kit 3.2.

    Returns ``{"energy": (nf,), "atom_energy": (nf, natoms)}``.
    """
    coord, atype, box = _inputs(coord, atype, box)
    nf, natoms, _ = coord.shape
    m = _dp_model(model)
    ret = m.call(coord.reshape(nf, natoms * 3), atype,
                 None if box is None else box.reshape(nf, 9))
    return {
        "energy": np.asarray(ret["energy"], dtype=np.float64).reshape(nf),
        "atom_energy": np.asarray(ret["atom_energy"], dtype=np.float64).reshape(nf, natoms),
    }


def dp_neighbor_list(model, coord, atype, box=None) -> dict:
    """deepmd-kit's extended system and neighbour list for these inputs (NumPy backend).

    Returns ``{"extended_coord": (nf, nall, 3), "extended_atype": (nf, nall),
    "mapping": (nf, nall) extended -> local index, "nlist": (nf, nloc, sum(sel))}``
    with -1 for empty slots; local atoms are the first ``nloc`` extended atoms
    (wrapped into the cell when ``box`` is given).  Model-level
    ``pair_exclude_types`` are already applied, as ``call`` does.
    """
    from deepmd.dpmodel.utils.nlist import extend_input_and_build_neighbor_list

    coord, atype, box = _inputs(coord, atype, box)
    nf, natoms, _ = coord.shape
    m = _dp_model(model)
    ext_coord, ext_atype, mapping, nlist = extend_input_and_build_neighbor_list(
        coord.reshape(nf, natoms * 3), atype, m.get_rcut(), m.get_sel(),
        mixed_types=m.mixed_types(), box=None if box is None else box.reshape(nf, 9),
        pair_excl=m.atomic_model.pair_excl,
    )
    return {
        "extended_coord": np.asarray(ext_coord).reshape(nf, -1, 3),
        "extended_atype": np.asarray(ext_atype),
        "mapping": np.asarray(mapping),
        "nlist": np.asarray(nlist),
    }


def dp_descriptor(model, coord, atype, box=None) -> dict:
    """deepmd-kit's own descriptor stages of one frame on its own neighbour list (NumPy backend).

    :func:`dp_neighbor_list`, then the descriptor's ``env_mat.call`` (pair vectors and
    normalised environment rows) and ``call`` (descriptor and rot_mat).  Returns, for the
    first frame: ``nlist`` (nloc, sum(sel)) with extended indices mapped to local atoms
    (``mapping``; -1 kept), ``rij`` (nloc, nnei, 3), ``env_mat`` (nloc, nnei, 4),
    ``descriptor`` (nloc, M1*M2) and ``rot_mat`` (nloc, M1, 3).
    """
    nl = dp_neighbor_list(model, coord, atype, box)
    desc = _dp_model(model).atomic_model.descriptor
    ext_c, ext_t, nlist = nl["extended_coord"][:1], nl["extended_atype"][:1], nl["nlist"][:1]
    rr, diff, _ = desc.env_mat.call(ext_c.reshape(1, -1), ext_t, nlist, desc.davg, desc.dstd)
    d, rot_mat = desc.call(ext_c.reshape(1, -1), ext_t, nlist)[:2]
    mapping = nl["mapping"][0]
    local = np.where(nlist[0] >= 0, mapping[np.maximum(nlist[0], 0)], -1)
    return {"nlist": local, "rij": np.asarray(diff)[0], "env_mat": np.asarray(rr)[0],
            "descriptor": np.asarray(d)[0], "rot_mat": np.asarray(rot_mat)[0]}


# ----------------------------------------------------------------- PyTorch backend
# the import of deepmd.pt itself (and its cxx_op workaround) lives in the package, where the
# benchmarks use it too; it imports deepmd-kit and computes nothing
from symref.deepmd_kit import PT_WORKAROUND, import_deepmd_pt  # noqa: E402,F401


def pt_eval(model, coord, atype, box=None, *, do_atomic_virial: bool = True) -> dict:
    """Energy, forces, virial and per-atom quantities from deepmd-kit's PyTorch backend.

    ``BaseModel.deserialize`` from ``deepmd.pt.model.model`` on the serialized
    dict, then ``model(coord, atype, box=box, do_atomic_virial=True)``;
    forces and virials come from autograd.

    Returns ``energy`` (nf,), ``atom_energy`` (nf, natoms), ``forces``
    (nf, natoms, 3), ``virial`` (nf, 3, 3) and ``atom_virial`` (nf, natoms, 3, 3).
    """
    import_deepmd_pt()
    import torch
    from deepmd.pt.model.model import BaseModel as PTBaseModel
    from deepmd.pt.utils import env as pt_env

    coord, atype, box = _inputs(coord, atype, box)
    nf, natoms, _ = coord.shape
    m = PTBaseModel.deserialize(as_model_dict(model)).to(pt_env.DEVICE)
    m.eval()
    dev = pt_env.DEVICE
    ret = m(
        torch.tensor(coord, dtype=torch.float64, device=dev),
        torch.tensor(atype, dtype=torch.int64, device=dev),
        box=None if box is None else torch.tensor(box, dtype=torch.float64, device=dev),
        do_atomic_virial=do_atomic_virial,
    )

    def get(key, shape):
        return ret[key].detach().cpu().numpy().astype(np.float64).reshape(shape)

    out = {
        "energy": get("energy", (nf,)),
        "atom_energy": get("atom_energy", (nf, natoms)),
        "forces": get("force", (nf, natoms, 3)),
        "virial": get("virial", (nf, 3, 3)),
    }
    if do_atomic_virial:
        out["atom_virial"] = get("atom_virial", (nf, natoms, 3, 3))
    return out


# ----------------------------------------------------------------- data
def load_npy_system(system_dir, set_name: str = "set.000", frames=None):
    """(coord (nf, natoms, 3), atype (natoms,), box (nf, 9) or None, type_map) in float64.

    Reads a deepmd-kit npy system (``type.raw``, optional ``type_map.raw`` and
    ``nopbc``, ``set.NNN/coord.npy``, ``box.npy``); ``frames`` selects frames.
    """
    system_dir = Path(system_dir)
    atype = np.loadtxt(system_dir / "type.raw", dtype=np.int64, ndmin=1)
    tm_file = system_dir / "type_map.raw"
    type_map = tm_file.read_text().split() if tm_file.exists() else None
    coord = np.load(system_dir / set_name / "coord.npy").astype(np.float64)
    coord = coord.reshape(coord.shape[0], -1, 3)
    box = None
    if not (system_dir / "nopbc").exists() and (system_dir / set_name / "box.npy").exists():
        box = np.load(system_dir / set_name / "box.npy").astype(np.float64).reshape(-1, 9)
    if frames is not None:
        coord = coord[frames]
        box = None if box is None else box[frames]
    return coord, atype, box, type_map


def make_deepmd_descriptor_model(seed: int, descriptor: dict, fitting_neuron, type_map, *,
                                 atom_exclude_types=(), pair_exclude_types=(),
                                 stats: str = "slot") -> dict:
    """An ``ener`` model on any descriptor section deepmd-kit builds (``se_r``, ``se_e3``,
    ``hybrid``, ...; tests/test_se_e2_r.py, test_hybrid.py, test_se_e3.py), seeded, with
    non-trivial statistics: for every descriptor (each member of a hybrid)
    ``davg[..., 0]`` ~ N(0, 0.1²) and ``dstd[..., 0]`` ~ U[0.5, 2] per (centre type,
    slot), the direction columns (if any) one ``dstd`` ~ U[0.5, 2] per slot and zero
    ``davg`` (rotation invariance); ``bias_atom_e`` and ``out_bias`` distinct per type.
    ``stats="type"``: one value per (centre type, neighbour-type block) instead, the
    structure deepmd-kit's statistics have -- needed where neighbours tie in distance
    (an atom's own images at ±a in a small cell), whose order in a block is arbitrary
    (deepmd-kit's NumPy and PyTorch backends order them differently); ``"slot"`` is the
    stricter test of the slot order elsewhere.  Returns ``model.serialize()``."""
    from deepmd.dpmodel.model.model import get_model

    ntypes = len(type_map)
    cfg = {"type_map": list(type_map), "descriptor": copy.deepcopy(descriptor),
           "fitting_net": {"type": "ener", "neuron": list(fitting_neuron), "seed": seed + 9},
           "atom_exclude_types": [int(t) for t in atom_exclude_types],
           "pair_exclude_types": [[int(a), int(b)] for a, b in pair_exclude_types]}
    if descriptor["type"] == "hybrid":
        for k, m in enumerate(cfg["descriptor"]["list"]):
            m.setdefault("seed", seed + k)
    else:
        cfg["descriptor"].setdefault("seed", seed)
    model = get_model(cfg)
    rng = np.random.default_rng(seed + 100)

    if stats not in ("slot", "type"):
        raise ValueError(f"stats must be 'slot' or 'type', got {stats!r}")

    def draw(d):
        shape, sel = np.asarray(d.davg).shape, list(d.get_sel())
        # one draw per slot, or per block of slots of one neighbour type, repeated
        reps = [1] * shape[1] if stats == "slot" else sel
        size = (shape[0], len(reps))
        davg, dstd = np.zeros(shape), np.ones(shape)
        davg[..., 0] = np.repeat(rng.normal(scale=0.1, size=size), reps, axis=1)
        dstd[..., 0] = np.repeat(rng.uniform(0.5, 2.0, size=size), reps, axis=1)
        dstd[..., 1:] = np.repeat(rng.uniform(0.5, 2.0, size=size), reps, axis=1)[..., None]
        return davg, dstd

    desc = model.atomic_model.descriptor
    if descriptor["type"] == "hybrid":
        pairs = [draw(d) for d in desc.descrpt_list]
        desc.set_stat_mean_and_stddev([p[0] for p in pairs], [p[1] for p in pairs])
    else:
        desc.set_stat_mean_and_stddev(*draw(desc))
    model.atomic_model.fitting_net["bias_atom_e"] = (-(np.arange(ntypes) + 1.0)).reshape(ntypes, 1)
    model.atomic_model["out_bias"] = (0.3 * (np.arange(ntypes) + 1.0)).reshape(1, ntypes, 1)
    return model.serialize()
