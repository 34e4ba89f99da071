r"""Conversion between ASE-readable files (extxyz, traj, ...) and deepmd-kit npy systems.

``symref convert frames.extxyz data/``  (ASE -> npy) and
``symref convert data/ frames.extxyz``  (npy -> ASE); the direction follows
from the input: a folder is a deepmd-kit system (or a folder of systems),
anything else a file for ``ase.io.read``.

Units and signs (both formats use eV and Å; nothing is rescaled):

====================== =========================== ==============================
quantity               ASE frame                   deepmd-kit npy
====================== =========================== ==============================
positions              ``atoms.positions`` Å       ``coord.npy`` (nf, 3·natoms) Å
cell                   ``atoms.cell`` rows Å       ``box.npy`` (nf, 9) rows Å
energy                 ``energy`` eV               ``energy.npy`` (nf,) eV
forces                 ``forces`` eV/Å             ``force.npy`` (nf, 3·natoms)
stress / virial        ``stress`` σ, eV/Å³         ``virial.npy`` W = −σ·V, eV
====================== =========================== ==============================

``W = −σ V`` is the convention of deepmd-kit, dpdata and symref's
:meth:`~symref.model.deeppot.DeepPot.evaluate` (whose virial gives ASE's stress as
``−W/V``).  A frame may instead carry the virial itself in ``atoms.info``
(key ``virial``, a 3 x 3 matrix, eV, same sign as deepmd-kit: the convention
of MACE/NequIP-style extxyz files); it is then copied unchanged.  (ASE's
extxyz code writes 3 x 3 info values column by column and reads any 9
numbers back as such a matrix, so keep them 3 x 3 in Python.)  Labels are
read from the frame's calculator results (what ``ase.io`` attaches for
``energy``/``forces``/``stress``) or, under other names (``--energy-key
REF_energy`` …), from ``atoms.info``/``atoms.arrays``.

Systems.  A deepmd-kit system has one atom sequence and one periodicity, so
frames are grouped by (chemical symbols in order, fully periodic or not);
one group is written as the system folder itself, several as sub-folders
named by formula.  ``pbc`` all True -> ``box.npy``; all False -> ``nopbc``
(the cell is dropped); a mixture cannot be expressed in the npy format and
raises ``ValueError`` unless ``mixed_pbc="periodic"`` (the cell is then
written as a fully periodic box).  ``type_map`` defaults to the elements in
order of first appearance.  A label present in some frames of a group but
not in others raises ``ValueError`` naming the first frame without it.

Precision: npy files are written as float64; ASE's extxyz writer prints
positions and per-atom arrays with 8 decimals (energies, stress and cells
in full), so an npy -> extxyz -> npy round trip is exact to ~5e-9 Å and
eV/Å (``.traj`` is exact).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atoms_to_systems", "systems_to_atoms", "read_frames", "write_frames", "convert",
           "to_npy", "to_ase"]


def _label(atoms, key: str, kind: str):
    """``key`` from the calculator results, ``atoms.info`` or ``atoms.arrays`` (None if absent)."""
    calc = atoms.calc
    if calc is not None and key in getattr(calc, "results", {}):
        return calc.results[key]
    if kind == "frame" and key in atoms.info:
        return atoms.info[key]
    if kind == "atom" and key in atoms.arrays:
        return atoms.arrays[key]
    return None


def _stress_matrix(s, where: str) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64).ravel()
    if s.size == 9:
        return s.reshape(3, 3)
    if s.size == 6:  # Voigt xx yy zz yz xz xy
        xx, yy, zz, yz, xz, xy = s
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise ValueError(f"{where}: stress has {s.size} values, expected 6 (Voigt) or 9")


def atoms_to_systems(frames, type_map=None, *, energy_key="energy", forces_key="forces",
                     stress_key="stress", virial_key="virial", mixed_pbc="error",
                     source: str = "frames"):
    """Group ASE frames into :class:`symref.io.data.System` objects (see the module docstring).

    Returns a list of ``(name, System)``.  ``type_map``: element names in type
    order (default: order of first appearance); an element not in it raises
    ``ValueError`` naming the frame and atom.
    """
    from symref.io.data import System

    frames = list(frames)
    if not frames:
        raise ValueError(f"{source}: no frames")
    if mixed_pbc not in ("error", "periodic"):
        raise ValueError(f"mixed_pbc must be 'error' or 'periodic', got {mixed_pbc!r}")
    if type_map is None:
        type_map = []
        for a in frames:
            for s in a.get_chemical_symbols():
                if s not in type_map:
                    type_map.append(s)
    type_map = list(type_map)
    index = {s: i for i, s in enumerate(type_map)}
    groups: dict = {}
    for k, a in enumerate(frames):
        where = f"{source}: frame {k}"
        syms = tuple(a.get_chemical_symbols())
        for i, s in enumerate(syms):
            if s not in index:
                raise ValueError(f"{where}: atom {i} is {s!r}, not in type_map {type_map}")
        pbc = a.pbc
        if pbc.any() and not pbc.all():
            if mixed_pbc == "error":
                raise ValueError(f"{where}: pbc {pbc.tolist()} is a mixture; deepmd-kit npy "
                                 "systems are fully periodic or not at all (use "
                                 "mixed_pbc='periodic' / --mixed-pbc periodic to write the cell "
                                 "as a periodic box)")
        periodic = bool(pbc.any())
        if periodic and not abs(np.linalg.det(np.asarray(a.cell))) > 0:
            raise ValueError(f"{where}: periodic but the cell {np.asarray(a.cell).tolist()} "
                             "has zero volume")
        groups.setdefault((syms, periodic), []).append(k)
    out, used = [], set()
    for (syms, periodic), idx in groups.items():
        sub = [frames[k] for k in idx]
        n = len(syms)
        coord = np.stack([a.positions for a in sub]).astype(np.float64)
        box = np.stack([np.asarray(a.cell, dtype=np.float64) for a in sub]) if periodic else None
        labels = {}
        for name, key in (("energy", energy_key), ("force", forces_key)):
            vals = [_label(a, key, "frame" if name == "energy" else "atom") for a in sub]
            labels[name] = _all_or_none(vals, idx, key, source)
        if labels["force"] is not None and labels["force"].shape[1:] != (n, 3):
            raise ValueError(f"{source}: {forces_key} has shape {labels['force'].shape[1:]}, "
                             f"expected ({n}, 3)")
        vir = []
        for a, k in zip(sub, idx):
            v = _label(a, virial_key, "frame") if virial_key else None
            if v is not None:
                v = np.asarray(v, dtype=np.float64).reshape(3, 3)
            else:
                s = _label(a, stress_key, "frame") if stress_key else None
                if s is not None:
                    vol = abs(np.linalg.det(np.asarray(a.cell)))
                    if not vol > 0:
                        raise ValueError(f"{source}: frame {k} has a stress but no cell volume")
                    v = -_stress_matrix(s, f"{source}: frame {k}") * vol
            vir.append(v)
        labels["virial"] = _all_or_none(vir, idx, f"{stress_key}/{virial_key}", source)
        energy = labels["energy"]
        system = System(type_map=type_map, atype=np.array([index[s] for s in syms]),
                        coord=coord, box=box,
                        energy=None if energy is None else energy.reshape(-1),
                        force=labels["force"], virial=labels["virial"], name=source)
        name = sub[0].get_chemical_formula(mode="hill") + ("" if periodic else "_nopbc")
        base, j = name, 1
        while name in used:
            name, j = f"{base}_{j}", j + 1
        used.add(name)
        out.append((name, system))
    return out


def _all_or_none(vals, idx, key, source):
    have = [v is not None for v in vals]
    if not any(have):
        return None
    if not all(have):
        k = idx[have.index(False)]
        raise ValueError(f"{source}: frame {k} has no {key!r} but other frames with the same "
                         f"atoms have it; a deepmd-kit system needs it in all frames or none")
    return np.stack([np.asarray(v, dtype=np.float64) for v in vals])


def systems_to_atoms(systems):
    """ASE frames (with a ``SinglePointCalculator`` holding the labels) of npy systems.

    Stress = −virial/V for periodic frames; a molecule's virial goes to
    ``atoms.info["virial"]`` (3 x 3, eV).
    """
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for s in systems:
        if s.type_map is None:
            raise ValueError(f"{s.name}: no type_map.raw; pass type_map to name the elements")
        syms = [s.type_map[t] for t in s.atype]
        for f in range(s.nframes):
            if s.box is None:
                a = Atoms(syms, positions=s.coord[f], pbc=False)
            else:
                a = Atoms(syms, positions=s.coord[f], cell=s.box[f], pbc=True)
            res = {}
            if s.energy is not None:
                res["energy"] = float(s.energy[f])
            if s.force is not None:
                res["forces"] = np.array(s.force[f])
            if s.virial is not None:
                if s.box is None:
                    a.info["virial"] = np.array(s.virial[f]).reshape(3, 3)
                else:
                    res["stress"] = -np.array(s.virial[f]) / abs(np.linalg.det(s.box[f]))
            if res:
                a.calc = SinglePointCalculator(a, **res)
            frames.append(a)
    return frames


def read_frames(path, index=":", fmt=None):
    """``ase.io.read(path, index, format=fmt)`` as a list."""
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        frames = ase.io.read(path, index=index, format=fmt)
    except Exception as e:  # noqa: BLE001 - ASE raises many types (XYZError, StopIteration, ...)
        raise ValueError(f"{path}: ase.io.read could not read it (format "
                         f"{fmt or 'from the suffix'}, index {index!r}): "
                         f"{type(e).__name__}: {e}") from e
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise ValueError(f"{path}: no frames (index {index!r})")
    return frames


def write_frames(path, frames, fmt=None) -> None:
    """``ase.io.write`` to ``path`` atomically; format from ``fmt`` or the suffix."""
    import ase.io
    from ase.io.formats import filetype

    from symref.io.model_file import atomic_write

    path = Path(path)
    fmt = fmt or filetype(str(path), read=False)
    atomic_write(path, lambda tmp: ase.io.write(tmp, frames, format=fmt))


def to_npy(frames, out, type_map=None, set_size=None, **kwargs) -> list[Path]:
    """Write ASE frames as deepmd-kit npy system(s) at ``out`` (see the module docstring).

    ``out`` must not exist.  Returns the system folders written.
    """
    from symref.io.data import save_system

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: exists; choose a new folder")
    systems = atoms_to_systems(frames, type_map, **kwargs)
    if len(systems) == 1:
        save_system(systems[0][1], out, set_size=set_size)
        return [out]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, s in systems:
            save_system(s, tmp / name, set_size=set_size)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [out / name for name, _ in systems]


def to_ase(system_paths, out, type_map=None, fmt=None) -> int:
    """Write npy system(s) (folders, or folders of systems) to one ASE file; returns
    the number of frames.  ``type_map`` names the types of systems without
    ``type_map.raw``."""
    from symref.io.data import load_system
    from symref.io.data import find_systems

    systems = []
    for p in system_paths:
        for sp in find_systems(p):
            s = load_system(sp)
            if s.type_map is None:
                if type_map is None:
                    raise ValueError(f"{sp}: no type_map.raw; give --type-map")
                if s.atype.max() >= len(type_map):
                    raise ValueError(f"{sp}: type {int(s.atype.max())} but --type-map "
                                     f"{type_map} has {len(type_map)} names")
                s.type_map = list(type_map)
            systems.append(s)
    frames = systems_to_atoms(systems)
    write_frames(out, frames, fmt)
    return len(frames)


def convert(src, dst, *, type_map=None, fmt=None, index=":", set_size=None, **kwargs) -> str:
    """Convert ``src`` to ``dst``: a folder ``src`` is read as npy system(s) and
    written with ASE; a file is read with ASE and written as npy system(s).
    Returns a one-line summary."""
    src = Path(src)
    if src.is_dir():
        if kwargs:
            raise ValueError(f"options {sorted(kwargs)} apply to ASE -> npy only")
        n = to_ase([src], dst, type_map=type_map, fmt=fmt)
        return f"{src} (npy) -> {dst}: {n} frames"
    frames = read_frames(src, index=index, fmt=fmt)
    written = to_npy(frames, dst, type_map=type_map, set_size=set_size, **kwargs)
    return (f"{src} -> {dst} (npy): {len(frames)} frames in {len(written)} system(s)"
            + ("" if len(written) == 1 else ": " + ", ".join(p.name for p in written)))


def cli(args) -> int:
    """``symref convert INPUT OUTPUT``."""
    kwargs = {}
    if not Path(args.input).is_dir():
        kwargs = dict(energy_key=args.energy_key, forces_key=args.forces_key,
                      stress_key=args.stress_key, virial_key=args.virial_key,
                      mixed_pbc=args.mixed_pbc)
    try:
        msg = convert(args.input, args.output, type_map=args.type_map, fmt=args.format,
                      index=args.index, set_size=args.set_size, **kwargs)
    except FileExistsError as e:  # reported by the command like the other input errors
        raise ValueError(str(e)) from e
    print(f"symref convert: {msg}", file=sys.stdout)
    return 0
