r"""Golden vectors: every stage of one frame on the reference path, for porters (DESIGN §8).

Someone porting Deep Potential to another code needs the *first* stage where their
numbers leave the truth.  :func:`dump` writes one folder per (model, frame):

``manifest.json``
    ``{"format": "symref-golden", "format_version": 1, "symref_version", "model_file",
    "system", "frame", "model": {"kind", "type_map", "descriptor", "rcut", "rcut_smth",
    "sel", "nnei", "M1", "M2"}, "units", "stages": [...]}`` (``M2`` for se_e2_a only; a
    hybrid's ``model`` has ``rcut``, ``sel``, ``nnei`` of its neighbour list and
    ``members``, each with its stage ``prefix`` and the keys above); ``stages`` lists
    every stage in data-flow order as ``{"name", "file", "shape", "dtype",
    "description"}`` (description: the formula and the names of the axes).
``<name>.npy``
    one array per stage (float64, or int64 for ``atype`` and the ``nlist`` stages).

Stages (n atoms, nnei = Σ sel slots, M1 embedding width, M2 axis width; every one
read from the reference code path, :meth:`symref.model.deeppot.DeepPot.trace_frame`
and :meth:`symref.model.tensor.DeepTensor.tensor_forward`): ``coord``, ``atype``,
``box`` (absent for a molecule), ``nlist``, ``rij``, then the descriptor's stages:

* se_e2_a: ``env_mat``, ``embedding_layer_k`` (hidden layers), ``G``, ``T``, ``descriptor``;
* se_e2_r: ``env_mat`` (n, nnei, 1: the radial column), ``s`` (the embedding input),
  ``embedding_layer_k``, ``G``, ``descriptor`` (1/5 of the mean of G over nnei slots);
* se_e3: ``env_mat``, then for every neighbour-type pair p <= q ``theta_p_q``
  (n, sel_p, sel_q), ``G_p_q`` (n, sel_p, sel_q, M1) and ``descriptor_p_q`` (its block
  of D), then ``descriptor`` (their sum); no hidden layers (nnei² x width each);
* hybrid: for member k, ``mk_nlist``/``mk_rij`` (its own neighbour list: its sel and
  rcut) and its stages above under the prefix ``mk_``, then ``descriptor`` (the
  members' side by side);

then ``fitting_layer_k`` (hidden layers), ``fitting_out``, and for an energy model
``atom_energy``, ``energy``, ``dE_dD``, ``dE_denv_mat`` (a hybrid: ``mk_dE_denv_mat``
per member), ``dE_drij``, ``force``, ``virial``, ``atom_virial``; for a dipole /
polarizability model ``rot_mat``, ``atom_dipole``/``atom_polarizability``,
``dipole``/``polarizability``.  Compressed models give ``G`` (``G_p_q``) from their
tables and no hidden embedding layers.  The dump itself satisfies
``energy = Σ atom_energy`` and ``virial = Σ atom_virial``.

:func:`compare` reads two such folders (the second may be a porter's, with or without a
manifest; stages found as ``<name>.npy``) and reports stage by stage the largest
absolute and relative difference, with

.. math::  \text{pass} \iff \max|b - a| \le \text{atol} + \text{rtol}\,\max|a|

(``a`` the first folder's array; integer stages must be equal), the first stage that
fails, stages missing from the second folder and shape mismatches.  ``symref golden``
(:func:`cli`) is the command line.

May import: ``symref.reference``, ``symref.model`` and ``symref.io``.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from symref._version import __version__
from symref.model.base import normalize_inputs
from symref.model.deeppot import DeepPot
from symref.model.tensor import DeepTensor
from symref.reference.descriptor.dispatch import descriptor_ops
from symref.reference.descriptor.hybrid import Hybrid, member_slots
from symref.reference.descriptor.se_e2_a import SeE2A, se_e2_a_slot_outputs
from symref.reference.descriptor.se_e2_r import SeE2R, se_e2_r_slot_outputs
from symref.reference.descriptor.se_e3 import SeE3, se_e3_pair_outputs
from symref.reference.fitting import fitting_hidden_outputs, tensor_head_weights

FORMAT = "symref-golden"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: default tolerances of :func:`compare` (float64 ports; a float32 port wants rtol ~1e-5)
RTOL, ATOL = 1e-10, 1e-12

_SLOT = "axes (centre i, slot s)"
_DESC = {
    "coord": "x_i, Cartesian positions as given (not wrapped into the cell), Å; "
             "axes (atom i, xyz)",
    "atype": "t_i, index of atom i's type in type_map; axes (atom i)",
    "box": "h, the cell: rows are the cell vectors a, b, c, Å; axes (cell vector, xyz)",
    "nlist": "j(i, s), the atom in slot s of centre i (for a periodic cell the atom whose "
             "image it is), -1 = empty; slots grouped by neighbour type (sel[0] slots of "
             "type 0, then sel[1] of type 1, ...), ascending |r_ji| inside a group, "
             "model pair_exclude_types emptied; " + _SLOT,
    "rij": "r_ji = x_j - x_i + n h (pair vector to the neighbour's image), Å, 0 in empty "
           "slots; " + _SLOT + ", xyz)",
    "env_mat": "R_is = (w(r)(1/r, x/r^2, y/r^2, z/r^2) - davg[t_i, s]) / dstd[t_i, s], "
               "r = |r_ji|, w the smooth switch from rcut_smth to rcut; an empty slot has "
               "w = 0, so R = -davg/dstd; " + _SLOT + ", 4)",
    "embedding_layer": "output of hidden layer {k} of the embedding net N_(t_i,t_j) "
                       "(N_(t_j) with type_one_side) at s_is = R_is0 k_is (k_is = 0 for the "
                       "descriptor's exclude_types); " + _SLOT + ", width)",
    "G": "G_is = N_(t_i,t_j)(s_is), the embedding net's output; " + _SLOT + ", M1)",
    "T": "T_i = (1/nnei) sum_s G_is (x) (k_is R_is), nnei = sum(sel) (padded count); "
         "axes (centre i, M1, 4)",
    "descriptor": "D_i = T_i T_i[:M2]^T (M1 x M2) flattened row-major, index a*M2 + b "
                  "(deepmd-kit's descriptor); axes (centre i, M1*M2)",
    # se_e2_r
    "env_mat:se_e2_r": "R_is = (w(r)/r - davg[t_i, s]) / dstd[t_i, s], r = |r_ji|, w the smooth "
                       "switch from rcut_smth to rcut (deepmd-kit's radial-only environment "
                       "matrix); an empty slot has R = -davg/dstd; " + _SLOT + ", 1)",
    "s:se_e2_r": "s_is = R_is k_is, the embedding input (k_is = 0 for the descriptor's "
                 "exclude_types); " + _SLOT + ")",
    "embedding_layer:se_e2_r": "output of hidden layer {k} of the embedding net N_(t_j) at "
                               "s_is; " + _SLOT + ", width)",
    "G:se_e2_r": "G_is = N_(t_j)(s_is) (a compressed model: its table); " + _SLOT + ", M)",
    "descriptor:se_e2_r": "D_i = (1/5) (1/nnei) sum_s G_is, nnei = sum(sel) (padded slots "
                          "counted; 1/5 is deepmd-kit's res_rescale); axes (centre i, M)",
    # se_e3
    "theta:se_e3": "theta_iab = X_ia . X_ib, X_is = k_is R_is[1:4] (the direction columns of "
                   "env_mat), a over the sel[{p}] slots of neighbour type {p}, b over the "
                   "sel[{q}] slots of type {q}; axes (centre i, slot a, slot b)",
    "G:se_e3": "G_iab = N_({p},{q})(theta_iab), net index {p} + {q} ntypes (a compressed "
               "model: its table over theta); axes (centre i, slot a, slot b, M)",
    "block:se_e3": "D^({p}{q})_i = sum_ab theta_iab G_iab / (sel[{p}] sel[{q}]); "
                   "axes (centre i, M)",
    "descriptor:se_e3": "D_i = sum over neighbour-type pairs p <= q of descriptor_p_q; "
                        "axes (centre i, M)",
    # hybrid
    "nlist:member": "the member's own neighbour list: the first sel_m[t] slots of each type "
                    "block of the hybrid's nlist, -1 where |r_ji| >= rcut_m (deepmd-kit's "
                    "build_multiple_neighbor_list); " + _SLOT + " of the member)",
    "rij:member": "r_ji on the member's slots, 0 where its nlist is -1; " + _SLOT
                  + " of the member, xyz)",
    "descriptor:hybrid": "D_i = [D^(0)_i, D^(1)_i, ...], the members' descriptors (m<k>_"
                         "descriptor) side by side; axes (centre i, sum of their widths)",
    "dE_denv_mat:member": "dE/dR_is of the member's env_mat; " + _SLOT
                          + " of the member, env_mat columns)",
    "fitting_layer": "output of hidden layer {k} of the fitting net of type t_i on D_i "
                     "(0 rows for the fitting's exclude_types); axes (atom i, width)",
    # energy head
    "fitting_out:energy": "F_(t_i)(D_i) + bias_atom_e[t_i], the fitting net's output plus "
                          "its bias (0 for the fitting's exclude_types), eV; axes (atom i)",
    "atom_energy": "E_i = fitting_out_i + out_bias[t_i] (0 for atom_exclude_types), eV; "
                   "axes (atom i)",
    "energy": "E = sum_i E_i, eV; scalar",
    "dE_dD": "dE/dD_i; axes (centre i, descriptor width)",
    "dE_denv_mat": "dE/dR_is (through G and T); " + _SLOT + ", 4)",
    "dE_drij": "g_is = dE/dr_ji, eV/Å, 0 in empty slots; " + _SLOT + ", xyz)",
    "force": "F_k = -dE/dx_k = sum_s g_ks - sum_{(i,s): j(i,s) = k} g_is, eV/Å; "
             "axes (atom k, xyz)",
    "virial": "W_ab = -sum_(i,s) g_is,a r_is,b = sum_k W^(k)_ab, eV; axes (a: force "
              "component, b: coordinate component)",
    "atom_virial": "W^(k)_ab = -sum_{(i,s): j(i,s) = k} g_is,a r_is,b (each pair credited to "
                   "its neighbour atom, deepmd-kit's convention), eV; axes (atom k, a, b)",
    # tensor heads
    "fitting_out:dipole": "o_i = F_(t_i)(D_i) + bias_atom[t_i] (0 for excluded types); "
                          "axes (atom i, M1)",
    "fitting_out:polar_diag": "p_i = scale[t_i] (F_(t_i)(D_i) + bias_atom[t_i]), the "
                              "diagonal of P_i (0 for excluded types); axes (atom i, M1)",
    "fitting_out:polar_full": "P_i = scale[t_i] (o_i + o_i^T) / 2, o_i = F_(t_i)(D_i) + "
                              "bias_atom[t_i] as M1 x M1 (0 for excluded types); "
                              "axes (atom i, M1, M1)",
    "rot_mat": "gr_i = T_i[:, 1:4] (deepmd-kit's rot_mat); axes (atom i, M1, xyz)",
    "atom_dipole": "mu_i = gr_i^T o_i (0 for excluded types); axes (atom i, xyz)",
    "dipole": "mu = sum_i mu_i; axes (xyz)",
    "atom_polarizability": "alpha_i = gr_i^T P_i gr_i + (shift_diag) scale[t_i] "
                           "(constant_matrix[t_i] + mean diag out_bias[t_i]) I (0 for "
                           "excluded types); axes (atom i, xyz, xyz)",
    "polarizability": "alpha = sum_i alpha_i; axes (xyz, xyz)",
}


# ============================================================================ stages
def _one_frame(model, coord, atype, box):
    if not isinstance(model, (DeepPot, DeepTensor)):
        raise TypeError(f"golden vectors need a DeepPot or DeepTensor model, got "
                        f"{type(model).__name__}")
    if not isinstance(model.descriptor, (SeE2A, SeE2R, SeE3, Hybrid)):
        raise ValueError(f"golden vectors are defined for se_e2_a, se_e2_r, se_e3 and hybrid "
                         f"descriptors; this model's is {type(model.descriptor).__name__}")
    coord, atype, box = normalize_inputs(coord, atype, box, model.ntypes)
    if coord.shape[0] != 1:
        raise ValueError(f"golden vectors are one frame: coord has {coord.shape[0]} frames "
                         "(pick one, e.g. coord[k])")
    return coord[0], atype[0], None if box is None else box[0]


def _embedding_stages(desc, R, d_cache, D, pre: str = "") -> list:
    """``env_mat`` through ``descriptor`` of one (non-hybrid) descriptor, names prefixed by
    ``pre``: ``(name, array, description)`` triples."""
    if isinstance(desc, SeE2A):
        *hidden, G = se_e2_a_slot_outputs(d_cache)  # nloc x nnei x width_k each
        out = [(pre + "env_mat", R, _DESC["env_mat"])]
        out += [(f"{pre}embedding_layer_{k}", y, _DESC["embedding_layer"].format(k=k))
                for k, y in enumerate(hidden)]
        return out + [(pre + "G", G, _DESC["G"]), (pre + "T", d_cache[2], _DESC["T"]),
                      (pre + "descriptor", D, _DESC["descriptor"])]
    if isinstance(desc, SeE2R):
        keep = d_cache[1]  # nloc x nnei
        *hidden, G = se_e2_r_slot_outputs(R, keep, desc)  # nloc x nnei x width_k each
        out = [(pre + "env_mat", R[..., :1], _DESC["env_mat:se_e2_r"]),
               (pre + "s", R[..., 0] * keep, _DESC["s:se_e2_r"])]
        out += [(f"{pre}embedding_layer_{k}", y, _DESC["embedding_layer:se_e2_r"].format(k=k))
                for k, y in enumerate(hidden)]
        return out + [(pre + "G", G, _DESC["G:se_e2_r"]),
                      (pre + "descriptor", D, _DESC["descriptor:se_e2_r"])]
    out = [(pre + "env_mat", R, _DESC["env_mat"])]  # se_e3
    for p, q, th, G, block in se_e3_pair_outputs(R, d_cache[2], desc):
        out += [(f"{pre}theta_{p}_{q}", th, _DESC["theta:se_e3"].format(p=p, q=q)),
                (f"{pre}G_{p}_{q}", G, _DESC["G:se_e3"].format(p=p, q=q)),
                (f"{pre}descriptor_{p}_{q}", block, _DESC["block:se_e3"].format(p=p, q=q))]
    return out + [(pre + "descriptor", D, _DESC["descriptor:se_e3"])]


def _hybrid_stages(h, tr, atype) -> list:
    """Every member's stages under its prefix ``m<k>_`` (its own nlist and rij, then
    :func:`_embedding_stages`), then the hybrid's descriptor."""
    _, widths, caches, _ = tr["d_cache"]
    Ds = np.split(tr["descriptor"], np.cumsum(widths)[:-1], axis=1)
    out = []
    for k, (m, idx) in enumerate(zip(h.members, member_slots(h))):
        pre = f"m{k}_"
        rij = tr["rij"][:, idx]  # nloc x nnei_m x 3
        inside = tr["mask"][:, idx] & (np.linalg.norm(rij, axis=-1) < m.rcut)  # nloc x nnei_m
        out += [(pre + "nlist", np.where(inside, tr["nlist"][:, idx], -1), _DESC["nlist:member"]),
                (pre + "rij", np.where(inside[..., None], rij, 0.0), _DESC["rij:member"])]
        out += _embedding_stages(m, tr["env_mat"][k], caches[k], Ds[k], pre)
    return out + [("descriptor", tr["descriptor"], _DESC["descriptor:hybrid"])]


def _descriptor_stages(model, tr, coord, atype, box) -> list:
    """Inputs through the hidden fitting layers: ``(name, array, description)`` triples."""
    out = [("coord", coord, _DESC["coord"]), ("atype", atype, _DESC["atype"])]
    if box is not None:
        out.append(("box", box, _DESC["box"]))
    out += [(k, tr[k], _DESC[k]) for k in ("nlist", "rij")]
    desc = model.descriptor
    if isinstance(desc, Hybrid):
        out += _hybrid_stages(desc, tr, atype)
    else:
        out += _embedding_stages(desc, tr["env_mat"], tr["d_cache"], tr["descriptor"])
    fit_hidden = fitting_hidden_outputs(tr["f_cache"], model.fitting, len(atype))  # nloc x w_k
    out += [(f"fitting_layer_{k}", y, _DESC["fitting_layer"].format(k=k))
            for k, y in enumerate(fit_hidden)]
    return out


def _env_gradient_stages(desc, dR) -> list:
    """``dE_denv_mat`` (per member for a hybrid, se_e2_r's radial column only)."""
    if isinstance(desc, Hybrid):
        return [(f"m{k}_dE_denv_mat", _env_gradient_stages(m, d)[0][1],
                 _DESC["dE_denv_mat:member"]) for k, (m, d) in enumerate(zip(desc.members, dR))]
    return [("dE_denv_mat", dR[..., :1] if isinstance(desc, SeE2R) else dR,
             _DESC["dE_denv_mat"])]


def stages(model, coord, atype, box=None, *, truncate: bool = False) -> list:
    """The golden stages of one frame, in data-flow order: ``(name, array, description)``.

    ``model``: :class:`~symref.model.deeppot.DeepPot` or
    :class:`~symref.model.tensor.DeepTensor`; ``coord`` (n, 3) (or (1, n, 3)),
    ``atype`` (n,), ``box`` (3, 3) / (9,) or None.  ``truncate``: deepmd-kit's
    neighbour truncation instead of an error when ``sel`` is exceeded.
    """
    coord, atype, box = _one_frame(model, coord, atype, box)
    if isinstance(model, DeepPot):
        tr = model.trace_frame(coord, atype, box, dtype=np.float64, truncate=truncate)
        out = _descriptor_stages(model, tr, coord, atype, box)
        out.append(("fitting_out", tr["fitting_out"], _DESC["fitting_out:energy"]))
        out += [(k, tr[k], _DESC[k]) for k in ("atom_energy", "energy", "dE_dD")]
        out += _env_gradient_stages(model.descriptor, tr["dE_denv_mat"])
        out.append(("dE_drij", tr["dE_drij"], _DESC["dE_drij"]))
        out += [("force", tr["forces"], _DESC["force"]),
                ("virial", tr["virial"], _DESC["virial"]),
                ("atom_virial", tr["atom_virial"], _DESC["atom_virial"])]
        return out
    atom, tr = model.tensor_forward(coord, atype, box, truncate=truncate)
    out = _descriptor_stages(model, tr, coord, atype, box)
    fit = model.fitting
    head = "dipole" if fit.kind == "dipole" else ("polar_diag" if fit.fit_diag else "polar_full")
    out.append(("fitting_out", tensor_head_weights(tr["f_cache"]), _DESC[f"fitting_out:{head}"]))
    out.append(("rot_mat", tr["T"][:, :, 1:], _DESC["rot_mat"]))  # nloc x M1 x 3
    name = model.var_name
    out += [(f"atom_{name}", atom, _DESC[f"atom_{name}"]),
            (name, atom.sum(axis=0), _DESC[name])]
    return out


# ============================================================================ dump / load
def _check_outdir(outdir: Path) -> None:
    if not outdir.parent.is_dir():
        raise FileNotFoundError(f"{outdir}: parent directory {outdir.parent} does not exist")
    if outdir.exists():
        if not outdir.is_dir():
            raise ValueError(f"{outdir}: exists and is not a directory")
        if any(outdir.iterdir()) and not (outdir / MANIFEST).is_file():
            raise ValueError(f"{outdir}: exists, is not empty and holds no {MANIFEST} "
                             "(refusing to replace a folder that is not a golden dump)")


def _write_array(path: Path, a: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, a, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())


def dump(model, coord, atype, box, outdir, *, model_file=None, system=None, frame=None,
         truncate: bool = False) -> Path:
    """Write the golden stages of one frame to ``outdir`` (see the module docstring).

    The folder appears complete or not at all: everything is written to a temporary
    folder beside it, which is then renamed; an existing dump in ``outdir`` is replaced.
    ``model_file``, ``system``, ``frame``: recorded in the manifest (provenance).
    Returns ``outdir`` as a :class:`~pathlib.Path`.  ``TypeError``/``ValueError`` for bad
    inputs (before anything is written).
    """
    outdir = Path(outdir)
    _check_outdir(outdir)
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, (int, np.integer))):
        raise TypeError(f"frame must be an int or None, got {frame!r}")
    st = stages(model, coord, atype, box, truncate=truncate)
    desc = model.descriptor
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "symref_version": __version__,
        "model_file": None if model_file is None else str(model_file),
        "system": None if system is None else str(system),
        "frame": None if frame is None else int(frame),
        "model": {"kind": "energy" if isinstance(model, DeepPot) else model.kind,
                  "type_map": list(model.type_map), **_descriptor_info(desc)},
        "units": {"length": "Å", "energy": "eV"},
        "stages": [],
    }
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".tmp", dir=outdir.parent))
    try:
        for name, a, text in st:
            a = np.asarray(a)
            a = np.array(a, dtype=np.int64 if a.dtype.kind in "iub" else np.float64, order="C")
            _write_array(tmp / f"{name}.npy", a)
            manifest["stages"].append({"name": name, "file": f"{name}.npy",
                                       "shape": list(a.shape), "dtype": str(a.dtype),
                                       "description": text})
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o777 & ~_umask())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if outdir.exists() and any(outdir.iterdir()):  # a previous dump: move it aside
        old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", suffix=".old", dir=outdir.parent))
        os.replace(outdir, old / "dump")
    try:
        os.replace(tmp, outdir)  # (an empty outdir is replaced by the rename itself)
    except BaseException:
        if old is not None:  # put the previous dump back
            os.replace(old / "dump", outdir)
            shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return outdir


def _descriptor_info(desc, prefix: str | None = None) -> dict:
    """The manifest's description of the descriptor: ``descriptor`` (its deepmd-kit type),
    ``rcut``, ``rcut_smth``, ``sel``, ``nnei``, ``M1`` (width of G) and ``M2`` (se_e2_a's
    axis width); a hybrid: ``rcut``, ``sel``, ``nnei`` of its neighbour list and
    ``members`` (each with its stage ``prefix``)."""
    if isinstance(desc, Hybrid):
        return {"descriptor": "hybrid", "rcut": float(desc.rcut),
                "sel": [int(s) for s in desc.sel], "nnei": desc.nnei,
                "members": [_descriptor_info(m, f"m{k}_") for k, m in enumerate(desc.members)]}
    out = {} if prefix is None else {"prefix": prefix}
    out.update(descriptor=descriptor_ops(desc).name, rcut=float(desc.rcut),
               rcut_smth=float(desc.rcut_smth), sel=[int(s) for s in desc.sel], nnei=desc.nnei,
               M1=int(desc.neuron[-1]))
    if isinstance(desc, SeE2A):
        out["M2"] = int(desc.axis_neuron)
    return out


def _umask() -> int:
    u = os.umask(0)
    os.umask(u)
    return u


def _read_manifest(path: Path) -> dict:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(m, dict) or not isinstance(m.get("stages"), list):
        raise ValueError(f"{path}: key 'stages' (a list of stages) is missing")
    for k, s in enumerate(m["stages"]):
        for key in ("name", "file"):
            if not isinstance(s, dict) or not isinstance(s.get(key), str):
                raise ValueError(f"{path}: stages[{k}] has no string {key!r}")
    return m


def load(directory) -> tuple[dict, dict]:
    """``(manifest, {stage name: array})`` of a dump written by :func:`dump`."""
    directory = Path(directory)
    manifest = _read_manifest(_manifest_path(directory))
    return manifest, {s["name"]: np.load(directory / s["file"], allow_pickle=False)
                      for s in manifest["stages"]}


def _manifest_path(directory: Path) -> Path:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a golden-vector folder")
    path = directory / MANIFEST
    if not path.is_file():
        raise ValueError(f"{path}: missing (the reference folder must be a dump of "
                         "symref golden)")
    return path


# ============================================================================ compare
@dataclass
class StageDiff:
    """One stage of a comparison.  ``status``: ``"ok"``, ``"exceeds"`` (beyond tolerance,
    or integer entries that differ), ``"shape"`` (shape mismatch), ``"unreadable"``,
    ``"missing"`` (absent from the second folder: reported, not a failure)."""

    name: str
    status: str
    shape: tuple
    max_abs: float | None = None
    max_rel: float | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("exceeds", "shape", "unreadable")


@dataclass
class Comparison:
    """Result of :func:`compare`: the stages in the first folder's order, stages only the
    second folder has (``extra``), and the tolerances used."""

    dir_a: str
    dir_b: str
    rtol: float
    atol: float
    stages: list[StageDiff] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def first_divergent(self) -> str | None:
        """Name of the first stage (data-flow order) that fails, or None."""
        return next((s.name for s in self.stages if s.failed), None)

    @property
    def compared(self) -> int:
        return sum(s.status != "missing" for s in self.stages)

    @property
    def ok(self) -> bool:
        """True when no stage fails and at least one stage was compared."""
        return self.first_divergent is None and self.compared > 0

    def format(self) -> str:
        def num(x):
            return f"{x:10.3e}" if x is not None else f"{'-':>10s}"

        lines = [f"golden compare: {self.dir_a} (a) vs {self.dir_b} (b)",
                 f"  pass: max|b - a| <= atol + rtol max|a|, rtol {self.rtol:g}, atol "
                 f"{self.atol:g}; integer stages must be equal",
                 f"  {'stage':20s} {'shape':16s} {'max abs':>10s} {'max rel':>10s}  status"]
        for s in self.stages:
            lines.append(f"  {s.name:20s} {str(s.shape):16s} {num(s.max_abs)} {num(s.max_rel)}"
                         f"  {s.status}{'  (' + s.detail + ')' if s.detail else ''}")
        if self.extra:
            lines.append(f"  only in b (not compared): {', '.join(self.extra)}")
        missing = [s.name for s in self.stages if s.status == "missing"]
        if missing:
            lines.append(f"  missing from b: {', '.join(missing)}")
        first = self.first_divergent
        if first is not None:
            lines.append(f"first stage beyond tolerance: {first}")
        elif self.compared == 0:
            lines.append("no stage in common: nothing compared")
        else:
            lines.append(f"all {self.compared} compared stages within tolerance")
        return "\n".join(lines)


def _stage_diff(name: str, a: np.ndarray, path_b: Path, rtol: float, atol: float) -> StageDiff:
    if not path_b.is_file():
        return StageDiff(name, "missing", a.shape, detail=f"no {path_b.name}")
    try:
        b = np.load(path_b, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return StageDiff(name, "unreadable", a.shape, detail=f"{path_b.name}: {exc}")
    if b.shape != a.shape:
        return StageDiff(name, "shape", a.shape, detail=f"b has shape {b.shape}")
    if a.size == 0:
        return StageDiff(name, "ok", a.shape, 0.0, 0.0)
    if b.dtype.kind not in "fiub":
        return StageDiff(name, "unreadable", a.shape, detail=f"b has dtype {b.dtype}")
    if a.dtype.kind in "iub":  # indices and types: exact
        neq = a != b
        n = int(neq.sum())
        d = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
        if n == 0:
            return StageDiff(name, "ok", a.shape, d, 0.0)
        where = tuple(int(v) for v in np.argwhere(neq)[0])
        return StageDiff(name, "exceeds", a.shape, d, None,
                         f"{n} entries differ, first at {where}: {a[where]} vs {b[where]}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if not np.isfinite(b64).all():
        return StageDiff(name, "exceeds", a.shape, math.inf, math.inf, "non-finite values in b")
    diff = np.abs(b64 - a64)
    err, scale = float(diff.max()), float(np.abs(a64).max())
    rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    ok = err <= atol + rtol * scale
    worst = tuple(int(v) for v in np.unravel_index(diff.argmax(), a.shape))
    detail = "" if ok else f"worst at {worst}: {float(a64[worst]):.17g} vs {float(b64[worst]):.17g}"
    return StageDiff(name, "ok" if ok else "exceeds", a.shape, err, rel, detail)


def _tolerance(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def compare(dir_a, dir_b, *, rtol: float = RTOL, atol: float = ATOL) -> Comparison:
    """Compare the dump in ``dir_b`` (e.g. a porter's) with the reference dump in ``dir_a``.

    ``dir_a`` needs its ``manifest.json`` (the stages and their order); ``dir_b`` is read
    through its manifest when it has one, else as ``<name>.npy`` files.  Returns a
    :class:`Comparison` (``.format()`` prints it, ``.first_divergent`` names the first
    failing stage, ``.ok``).  Missing stages and shape mismatches are reported, not raised;
    ``FileNotFoundError``/``ValueError`` only for folders or manifests that cannot be read
    and for bad tolerances.
    """
    rtol, atol = _tolerance("rtol", rtol), _tolerance("atol", atol)
    dir_a, dir_b = Path(dir_a), Path(dir_b)
    man_a = _read_manifest(_manifest_path(dir_a))
    if not dir_b.is_dir():
        raise FileNotFoundError(f"{dir_b}: not a folder")
    files_b = {}
    if (dir_b / MANIFEST).is_file():
        files_b = {s["name"]: s["file"] for s in _read_manifest(dir_b / MANIFEST)["stages"]}
    out = Comparison(str(dir_a), str(dir_b), rtol, atol)
    names_a = set()
    for s in man_a["stages"]:
        name = s["name"]
        names_a.add(name)
        try:
            a = np.load(dir_a / s["file"], allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{dir_a / s['file']}: stage {name!r} of the reference cannot be "
                             f"read ({exc})") from None
        out.stages.append(_stage_diff(name, a, dir_b / files_b.get(name, f"{name}.npy"),
                                      rtol, atol))
    found_b = set(files_b) | {p.stem for p in dir_b.glob("*.npy")}
    out.extra = sorted(found_b - names_a)
    return out


# ============================================================================ command line
def cli(args) -> int:
    """``symref golden MODEL --system DIR [--frame K] -o OUTDIR`` or
    ``symref golden --compare DIR_A DIR_B [--rtol R] [--atol A]`` (exit 1 when a stage
    fails).  Inputs are checked before any work (``ValueError`` naming what is wrong)."""
    if args.compare:
        if args.model or args.system or args.output:
            raise ValueError("symref golden --compare takes two folders and no MODEL, "
                             "--system or -o")
        res = compare(args.compare[0], args.compare[1],
                      rtol=RTOL if args.rtol is None else args.rtol,
                      atol=ATOL if args.atol is None else args.atol)
        print(res.format())
        return 0 if res.ok else 1
    if not args.model:
        raise ValueError("symref golden: give MODEL --system DIR -o OUTDIR, or --compare A B")
    if not args.system or not args.output:
        raise ValueError("symref golden MODEL needs --system DIR and -o OUTDIR")
    from symref.io.data import load_systems
    from symref.io.model_file import load_model

    model = load_model(args.model)
    s = load_systems(args.system, model.type_map)[0]
    k = args.frame
    if not 0 <= k < s.coord.shape[0]:
        raise ValueError(f"--frame {k} out of range: {args.system} has {s.coord.shape[0]} "
                         "frames")
    _check_outdir(Path(args.output))
    out = dump(model, s.coord[k], s.atype, None if s.box is None else s.box[k], args.output,
               model_file=args.model, system=args.system, frame=k, truncate=args.truncate)
    manifest = _read_manifest(out / MANIFEST)
    print(f"golden vectors: {out} ({len(manifest['stages'])} stages, "
          f"{len(s.atype)} atoms, frame {k} of {args.system})")
    return 0
