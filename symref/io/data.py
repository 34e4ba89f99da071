"""deepmd-kit npy systems, and small built-in systems for demos and tests.

A system folder (DESIGN.md §6) holds ``type.raw`` (one type index per atom),
``type_map.raw`` (element names, optional), an empty ``nopbc`` file for
molecules, and ``set.NNN/`` folders with ``coord.npy`` (nframes x 3·natoms, Å),
``box.npy`` (nframes x 9, rows are cell vectors, Å), ``energy.npy`` (eV),
``force.npy`` (nframes x 3·natoms, eV/Å) and optionally ``virial.npy``
(nframes x 9, eV).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np


@dataclass
class System:
    """Frames of one system, float64. ``box`` is None for molecules."""

    type_map: list[str] | None
    atype: np.ndarray  # natoms
    coord: np.ndarray  # nframes x natoms x 3
    box: np.ndarray | None  # nframes x 3 x 3
    energy: np.ndarray | None = None  # nframes
    force: np.ndarray | None = None  # nframes x natoms x 3
    virial: np.ndarray | None = None  # nframes x 3 x 3
    name: str = ""
    #: tensor labels (deepmd-kit file -> key): dipole.npy -> "dipole" (nframes x 3),
    #: atomic_dipole.npy -> "atom_dipole" (nframes x k x 3), polarizability.npy ->
    #: "polarizability" (nframes x 3 x 3), atomic_polarizability.npy ->
    #: "atom_polarizability" (nframes x k x 3 x 3); k = natoms, or the number of atoms
    #: of the selected types (deepmd-kit's sel_type layout, see :func:`atomic_labels`);
    #: and the energy loss's per-atom labels (:data:`ATOM_FILES`): atom_ener.npy ->
    #: "atom_ener", atom_pref.npy -> "atom_pref" (nframes x natoms)
    tensors: dict = field(default_factory=dict)

    @property
    def nframes(self) -> int:
        return self.coord.shape[0]

    @property
    def natoms(self) -> int:
        return self.atype.shape[0]


def _load_npy(path: Path, nframes: int | None, width: int | None) -> np.ndarray:
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - re-raised with the file named
        raise ValueError(f"{path}: cannot read as .npy ({exc})") from exc
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{path}: expected a real array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 1 and width == 1:
        a = a[:, None]
    if a.ndim == 1 and nframes == 1 and width is not None and a.size == width:
        a = a[None]
    if a.ndim != 2 or (width is not None and a.shape[1] != width) or \
            (nframes is not None and a.shape[0] != nframes):
        exp = f"({nframes if nframes is not None else 'nframes'}, {width})"
        raise ValueError(f"{path}: shape {a.shape}, expected {exp}")
    if not np.isfinite(a).all():
        f, k = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{path}: frame {f}, column {k} is not finite")
    return a


def load_system(path) -> System:
    """Read a deepmd-kit npy system folder (all ``set.*`` concatenated).

    Raises ``FileNotFoundError``/``ValueError`` naming the file that is missing or malformed.
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a system folder")
    tfile = root / "type.raw"
    if not tfile.is_file():
        raise FileNotFoundError(f"{tfile}: missing (every system needs type.raw)")
    try:
        atype = np.loadtxt(tfile, dtype=np.int64, ndmin=1)
    except ValueError as exc:
        raise ValueError(f"{tfile}: expected one integer type per atom ({exc})") from exc
    if atype.size == 0:
        raise ValueError(f"{tfile}: no atoms")
    if (atype < 0).any():
        raise ValueError(f"{tfile}: atom {int(np.argmax(atype < 0))} has a negative type")
    mfile = root / "type_map.raw"
    type_map = mfile.read_text().split() if mfile.is_file() else None
    if type_map is not None and atype.max() >= len(type_map):
        raise ValueError(f"{tfile}: type {atype.max()} but {mfile} names only {len(type_map)} types")
    natoms = atype.size
    periodic = not (root / "nopbc").exists()
    sets = sorted(p for p in root.glob("set.*") if p.is_dir())
    if not sets:
        raise FileNotFoundError(f"{root}: no set.* folders")
    parts: dict[str, list] = {"coord": [], "box": [], "energy": [], "force": [], "virial": []}
    tparts: dict[str, list] = {}
    for s in sets:
        cfile = s / "coord.npy"
        if not cfile.is_file():
            raise FileNotFoundError(f"{cfile}: missing")
        coord = _load_npy(cfile, None, 3 * natoms)
        nf = coord.shape[0]
        parts["coord"].append(coord.reshape(nf, natoms, 3))
        if periodic:
            bfile = s / "box.npy"
            if not bfile.is_file():
                raise FileNotFoundError(f"{bfile}: missing (periodic system; add an empty "
                                        f"'nopbc' file to {root} for a molecule)")
            box = _load_npy(bfile, nf, 9).reshape(nf, 3, 3)
            for f in range(nf):
                if abs(np.linalg.det(box[f])) < 1e-10:
                    raise ValueError(f"{bfile}: frame {f} has a singular cell")
            parts["box"].append(box)
        for key, width, fname in (("energy", 1, "energy.npy"), ("force", 3 * natoms, "force.npy"),
                                  ("virial", 9, "virial.npy")):
            p = s / fname
            if p.is_file():
                a = _load_npy(p, nf, width)
                shape = {"energy": (nf,), "force": (nf, natoms, 3), "virial": (nf, 3, 3)}[key]
                parts[key].append(a.reshape(shape))
            else:
                parts[key].append(None)
        for key, width, names in TENSOR_FILES:
            found = [s / n for n in names if (s / n).is_file()]
            tparts.setdefault(key, []).append(_load_tensor(found[0], nf, width, natoms)
                                              if found else None)
        for key, fname in ATOM_FILES.items():
            p = s / fname
            tparts.setdefault(key, []).append(_load_atom_label(p, nf, natoms)
                                              if p.is_file() else None)

    def cat(key):
        vals = parts[key]
        if not vals or any(v is None for v in vals):
            return None
        return np.concatenate(vals)

    tensors = {}
    for key, vals in tparts.items():
        if all(v is not None for v in vals):
            if len({v.shape[1:] for v in vals}) > 1:
                raise ValueError(f"{root}: {key} labels have different shapes in different sets")
            tensors[key] = np.concatenate(vals)
    return System(type_map=type_map, atype=atype, coord=cat("coord"),
                  box=cat("box") if periodic else None, energy=cat("energy"),
                  force=cat("force"), virial=cat("virial"), name=str(root), tensors=tensors)


#: (key, components per atom or frame, accepted file names)
TENSOR_FILES = (("dipole", 3, ("dipole.npy",)),
                ("atom_dipole", 3, ("atomic_dipole.npy", "atom_dipole.npy")),
                ("polarizability", 9, ("polarizability.npy",)),
                ("atom_polarizability", 9, ("atomic_polarizability.npy",
                                            "atom_polarizability.npy")))

#: per-atom labels of deepmd-kit's energy loss (key -> file; nframes x natoms): the atomic
#: energy of the ``ae`` term and the force weight of the ``pf`` term
ATOM_FILES = {"atom_ener": "atom_ener.npy", "atom_pref": "atom_pref.npy"}


def _load_atom_label(path: Path, nf: int, natoms: int) -> np.ndarray:
    """``atom_ener.npy`` (nf, natoms) or ``atom_pref.npy``: (nf, natoms), or (nf, natoms x 3),
    one weight per force component, read as (nf, natoms, 3) -- deepmd-kit 3.2's PyTorch
    data loader reads atom_pref per frame without its 3-fold repeat, so there only that
    layout trains."""
    a = _load_npy(path, nf, None)
    if a.shape[1] == natoms:
        return a
    if path.name == "atom_pref.npy" and a.shape[1] == 3 * natoms:
        return a.reshape(nf, natoms, 3)
    wide = " or natoms x 3" if path.name == "atom_pref.npy" else ""
    raise ValueError(f"{path}: shape {a.shape}, expected ({nf}, {natoms}{wide})")


def _load_tensor(path: Path, nf: int, width: int, natoms: int) -> np.ndarray:
    """A tensor label file as (nf, 3|3x3) or (nf, k, 3|3x3) for atomic labels."""
    a = _load_npy(path, nf, None)
    atomic = path.name.startswith("atom")
    shape = (3,) if width == 3 else (3, 3)
    if not atomic:
        if a.shape[1] != width:
            raise ValueError(f"{path}: shape {a.shape}, expected ({nf}, {width})")
        return a.reshape((nf,) + shape)
    if a.shape[1] % width or not 0 < a.shape[1] // width <= natoms:
        raise ValueError(f"{path}: shape {a.shape}, expected ({nf}, {width} x k) with k = "
                         f"natoms ({natoms}) or the number of selected atoms")
    return a.reshape((nf, a.shape[1] // width) + shape)


def atomic_labels(system: System, key: str, sel_types) -> np.ndarray:
    """``system.tensors[key]`` (an atomic label) as (nframes, natoms, ...), zeros for
    atoms outside ``sel_types`` (deepmd-kit's convention).  Files may hold every atom
    or only the selected ones (in atom order)."""
    a = system.tensors[key]
    sel = np.isin(system.atype, list(sel_types))
    k = a.shape[1]
    if k == system.natoms:
        return np.where(sel.reshape((1, -1) + (1,) * (a.ndim - 2)), a, 0.0)
    if k != int(sel.sum()):
        raise ValueError(f"{system.name or 'system'}: {key} has {k} atoms per frame; expected "
                         f"natoms ({system.natoms}) or the atoms of the selected types "
                         f"{sorted(sel_types)} ({int(sel.sum())})")
    out = np.zeros((a.shape[0], system.natoms) + a.shape[2:])
    out[:, sel] = a
    return out


# ------------------------------------------------------------ built-in systems
def _place(rng, n, dmin, box=None, side=None, max_tries=100000):
    """``n`` random points with all distances (over periodic images if ``box``) >= ``dmin``.

    Molecules: uniform in [0, side)³.  Cells: uniform in fractional coordinates.
    """
    from symref.reference.neighbors import image_shifts

    shifts = np.zeros((1, 3)) if box is None else image_shifts(box, dmin) @ box
    pts = np.zeros((0, 3))
    for _ in range(max_tries):
        p = rng.uniform(0.0, side, size=3) if box is None else rng.uniform(size=3) @ box
        d = pts[None, :, :] + shifts[:, None, :] - p  # nimg x npts x 3
        if pts.shape[0] == 0 or np.linalg.norm(d, axis=-1).min() >= dmin:
            pts = np.vstack([pts, p])
            if len(pts) == n:
                return pts
    raise RuntimeError(f"could not place {n} atoms with spacing {dmin} Å")


def make_molecule(natoms: int = 9, ntypes: int = 3, seed: int = 0, dmin: float = 1.0) -> System:
    """A random compact cluster (no cell), like the small C/H/O molecules.

    Atoms are placed in a box of side ~ (natoms)^(1/3)·1.6 Å with spacing >= ``dmin`` Å.
    """
    rng = np.random.default_rng(seed)
    side = 1.6 * natoms ** (1 / 3) + 1.0
    coord = _place(rng, natoms, dmin, side=side)
    atype = np.arange(natoms) % ntypes
    return System(type_map=["C", "H", "O"][:ntypes] if ntypes <= 3 else None,
                  atype=atype, coord=coord[None], box=None, name="molecule")


def make_crystal(seed: int = 0, skew: float = 0.35, natoms: int = 8, side: float = 4.2) -> System:
    """A small *triclinic* periodic cell (shorter than 2·rcut for rcut > side/2), two types.

    Cell rows: ``a = (L, 0, 0)``, ``b = (skew·L, L, 0)``, ``c = (−0.2·L, skew·L, L)``
    with ``L = side`` Å; atoms placed randomly with minimum-image spacing >= 1.1 Å.
    Each atom sees many periodic images of every other atom (and of itself)
    within a typical rcut, which exercises the image enumeration.
    """
    rng = np.random.default_rng(seed)
    L = side
    box = np.array([[L, 0, 0], [skew * L, L, 0], [-0.2 * L, skew * L, L]])
    coord = _place(rng, natoms, 1.1, box=box)
    atype = np.arange(natoms) % 2
    return System(type_map=["A", "B"], atype=atype, coord=coord[None], box=box[None],
                  name="crystal")


# ------------------------------------------------------------ training sets
def map_types(system: System, type_map: list[str]) -> System:
    """``system`` with its atom types re-indexed onto ``type_map`` (matched by element name).

    A system without ``type_map.raw`` must already use ``type_map``'s indices.
    Raises ``ValueError`` naming the system and the element the model does not know.
    """
    atype = system.atype
    if system.type_map is None:
        if atype.max() >= len(type_map):
            raise ValueError(f"{system.name or 'system'}: type {int(atype.max())} but the model's "
                             f"type_map {type_map} has {len(type_map)} types (and the system "
                             f"has no type_map.raw to map by name)")
        new = atype.copy()
    else:
        index = {name: i for i, name in enumerate(type_map)}
        missing = sorted({system.type_map[t] for t in np.unique(atype)} - set(index))
        if missing:
            raise ValueError(f"{system.name or 'system'}: element(s) {missing} are not in the "
                             f"model's type_map {type_map}")
        lookup = np.array([index.get(name, -1) for name in system.type_map], dtype=np.int64)
        new = lookup[atype]
    return replace(system, type_map=list(type_map), atype=new)


def find_systems(path) -> list[Path]:
    """``path`` if it is a deepmd-kit npy system (has ``type.raw``), else every system
    folder below it, sorted (deepmd-kit's ``expand_sys_str``)."""
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such system or folder")
    if (root / "type.raw").is_file():
        return [root]
    found = sorted(p.parent for p in root.rglob("type.raw"))
    if not found:
        raise FileNotFoundError(f"{root}: no deepmd-kit system (no type.raw) in it or below")
    return found


def load_systems(paths, type_map: list[str]) -> list[System]:
    """Read several deepmd-kit npy systems (any sizes and type maps) onto ``type_map``."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    systems = [map_types(load_system(p), type_map) for p in paths]
    if not systems:
        raise ValueError("no systems given")
    return systems


def select_frames(system: System, frames) -> System:
    """The given frames (index array) of ``system``."""
    frames = np.asarray(frames, dtype=np.int64)

    def take(a):
        return None if a is None else a[frames]

    return replace(system, coord=system.coord[frames], box=take(system.box),
                   energy=take(system.energy), force=take(system.force),
                   virial=take(system.virial),
                   tensors={k: v[frames] for k, v in system.tensors.items()})


def split_frames(systems: list[System], valid_fraction: float, seed: int = 0):
    """Frame-level train/validation split of every system: ``(train, valid)`` lists.

    Each system keeps at least one training frame; the choice is a seeded
    permutation, so the split is reproducible.  Systems left without
    validation frames are omitted from ``valid``.
    """
    if not 0.0 <= valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must be in [0, 1), got {valid_fraction}")
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for s in systems:
        perm = rng.permutation(s.nframes)
        nval = min(int(round(valid_fraction * s.nframes)), s.nframes - 1)
        train.append(select_frames(s, np.sort(perm[nval:])))
        if nval:
            valid.append(select_frames(s, np.sort(perm[:nval])))
    return train, valid


def save_system(system: System, path, set_size: int | None = None) -> None:
    """Write ``system`` as a deepmd-kit npy folder (``type.raw``, ``type_map.raw``,
    ``nopbc`` for molecules, ``set.000``… with ``coord``/``box``/``energy``/``force``/
    ``virial`` and the tensor labels under deepmd-kit's file names).  The folder is
    assembled beside ``path`` and renamed into place, so an interrupted write leaves
    nothing half-written; ``FileExistsError`` if ``path`` exists."""
    import os
    import shutil
    import tempfile

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: exists; choose a new folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        np.savetxt(tmp / "type.raw", system.atype, fmt="%d")
        if system.type_map is not None:
            (tmp / "type_map.raw").write_text("\n".join(system.type_map) + "\n")
        if system.box is None:
            (tmp / "nopbc").write_text("")
        nf, n = system.nframes, set_size or system.nframes
        files = {"coord.npy": system.coord, "box.npy": system.box, "energy.npy": system.energy,
                 "force.npy": system.force, "virial.npy": system.virial}
        names = {"dipole": "dipole.npy", "atom_dipole": "atomic_dipole.npy",
                 "polarizability": "polarizability.npy",
                 "atom_polarizability": "atomic_polarizability.npy", **ATOM_FILES}
        files.update({names[k]: v for k, v in system.tensors.items()})
        for k, s0 in enumerate(range(0, nf, n)):
            d = tmp / f"set.{k:03d}"
            d.mkdir()
            for fname, a in files.items():
                if a is not None:
                    a = np.asarray(a[s0:s0 + n], dtype=np.float64)
                    np.save(d / fname, a.reshape(a.shape[0], -1))
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
