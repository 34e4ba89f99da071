r"""ASE calculator for symref models: ``SymrefCalculator``.

::

    from symref.ase import SymrefCalculator
    atoms.calc = SymrefCalculator("model.dp")            # or a DeepPot, or a list of them
    atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()

Results (ASE's names, units and signs):

============== ============== ====================================================
key            shape          meaning
============== ============== ====================================================
``energy``     ()             E, eV (``free_energy`` is the same number)
``energies``   (natoms,)      atomic energies E_i, eV (sum = E)
``forces``     (natoms, 3)    F = −∂E/∂x, eV/Å
``stress``     (6,)           σ = −W/V, eV/Å³, Voigt order xx, yy, zz, yz, xz, xy
``stresses``   (natoms, 6)    −W_i/V (symmetrised), sum over atoms = ``stress``
``model_devi`` dict           ensemble uncertainty of the last call (several models)
============== ============== ====================================================

``W`` is symref's virial (README: ``W = −Σ_pairs ∂E/∂r_ji ⊗ r_ji``), so
``σ = (1/V) ∂E/∂ε`` for a homogeneous strain ε that moves the atoms with the
cell, exactly what :func:`ase.calculators.fd.calculate_numerical_stress`
differentiates.  ``V`` is the volume of ``atoms.cell``; the stress is
available whenever that cell has a nonzero volume (also for a molecule in a
box, or a slab whose cell includes the vacuum), and raises
``PropertyNotImplementedError`` otherwise.

Periodic boundary conditions (``atoms.pbc``):

* all three periodic: ``atoms.cell`` is the box (rows are cell vectors, any
  triclinic cell, also shorter than 2·rcut).
* none periodic: the model sees a molecule (``box=None``, no images); the
  cell, if any, only serves for the stress.
* a mixture (a slab periodic along a and b with vacuum along c, a wire
  periodic along a only): the model evaluates a box whose periodic rows are
  the cell vectors of the periodic axes and whose other rows are replaced by
  unit normals ``n`` to the periodic vectors (for one periodic axis a: two
  orthonormal vectors perpendicular to a) times
  ``L = (max − min of n·x over the atoms) + rcut + 1 Å``.  Images along ``n``
  are then more than ``rcut`` from every atom, so nothing interacts across a
  non-periodic direction whatever the vacuum in ``atoms.cell`` is (even none,
  or a zero cell vector).  The energy does not depend on ``L``, and pair
  vectors (hence forces and virial) are the same as in the infinite slab.

Types: each atom's chemical symbol is looked up in the model's ``type_map``
(or in ``type_map=`` given to the calculator: a list of symbols in the model's
type order, or a dict symbol -> type index); an element the model does not
know raises ``ValueError`` naming it and its atom indices.

Caching: ASE's ``Calculator`` stores a copy of the atoms with the results; a
new evaluation happens only when positions, numbers, cell or pbc changed
(compared exactly, :meth:`SymrefCalculator.check_state`; momenta, charges
and magnetic moments do not matter).
:attr:`SymrefCalculator.ncalls` counts model evaluations.

Ensembles: with several models (``SymrefCalculator([m1, m2, m3])``) the first
one drives (energy, forces, stress: the convention of deepmd-kit's LAMMPS
``pair_style deepmd`` with several models) and every call also stores
``results["model_devi"]``: ``max_devi_f``/``min_devi_f``/``avg_devi_f`` (eV/Å),
``max_devi_v``/``min_devi_v``/``avg_devi_v`` (eV, virial per atom),
``devi_e`` (eV/atom) and ``atom_devi_f`` (natoms,), defined as in
:mod:`symref.modeldevi` (``dp model-devi``).  :meth:`SymrefCalculator.get_model_devi`
returns it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    import ase
    import ase.data
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("symref.ase needs ASE: pip install 'symref[ase]' (ase >= 3.22)") from exc
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import atomic_numbers

__all__ = ["SymrefCalculator", "evaluation_box"]

#: extra length beyond extent + rcut given to a non-periodic axis (Å)
VACUUM_MARGIN = 1.0


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def evaluation_box(cell, pbc, positions, rcut: float):
    """The box (3 x 3, rows are cell vectors, Å) that ``DeepPot.evaluate`` gets for
    ``atoms.cell``/``atoms.pbc``, or None when no axis is periodic (see the module
    docstring for the convention on mixtures).

    Raises ``ValueError`` when a periodic cell vector is zero or the periodic
    vectors are linearly dependent.
    """
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    if not pbc.any():
        return None
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    per = np.flatnonzero(pbc)
    vecs = cell[per]  # nper x 3
    for i, v in zip(per, vecs):
        if not np.linalg.norm(v) > 1e-8:
            raise ValueError(f"axis {i} is periodic (pbc={pbc.tolist()}) but cell vector {i} "
                             f"is {v.tolist()}: a periodic axis needs a nonzero cell vector")
    if pbc.all():
        vol = abs(np.linalg.det(cell))
        if not vol > 1e-10 * np.prod(np.linalg.norm(cell, axis=1)):
            raise ValueError(f"periodic cell {cell.tolist()} is singular (volume {vol:.3g} Å^3)")
        return cell
    if len(per) == 2:
        nrm = np.cross(vecs[0], vecs[1])
        if not np.linalg.norm(nrm) > 1e-10 * np.linalg.norm(vecs[0]) * np.linalg.norm(vecs[1]):
            raise ValueError(f"periodic cell vectors {per.tolist()} of {cell.tolist()} are parallel")
        normals = [_unit(nrm)]
    else:
        a = _unit(vecs[0])
        e = np.eye(3)[np.argmin(np.abs(a))]  # the Cartesian axis least aligned with a
        n1 = _unit(np.cross(a, e))
        normals = [n1, _unit(np.cross(a, n1))]
    box = cell.copy()
    x = np.asarray(positions, dtype=np.float64)
    for i, n in zip(np.flatnonzero(~pbc), normals):
        proj = x @ n  # natoms
        box[i] = n * (float(proj.max() - proj.min()) + rcut + VACUUM_MARGIN)
    return box


def _load(model):
    from symref.model.deeppot import DeepPot

    if isinstance(model, (str, Path)):
        from symref.io.model_file import load_model

        model = load_model(model)
    if not isinstance(model, DeepPot):  # DeepTensor is a sibling, not a DeepPot
        raise TypeError(f"SymrefCalculator needs an energy model (symref DeepPot or a model "
                        f"file), got {type(model).__name__}")
    return model


class SymrefCalculator(Calculator):
    """ASE calculator for a symref :class:`~symref.model.deeppot.DeepPot` (see the module docstring).

    Parameters
    ----------
    model : DeepPot, path of a model file (.dp, .yaml, .json), or a list of
        them (an ensemble: the first drives, all give ``model_devi``).
    backend : "numba" (default, the fast CPU path) or "numpy" (the reference).
    precision : None (the model's, float64) or "float32"; results are
        returned as float64 arrays either way.
    type_map : None (the model's ``type_map``, entries read as chemical
        symbols), a list of symbols in the model's type order, or a dict
        symbol -> type index.
    **kwargs : passed to :class:`ase.calculators.calculator.Calculator`.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]
    default_parameters: dict = {}

    def __init__(self, model, backend: str = "numba", precision: str | None = None,
                 type_map=None, **kwargs):
        from symref.model.backends import BACKENDS

        super().__init__(**kwargs)
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        if not models:
            raise ValueError("SymrefCalculator: empty list of models")
        self.models = [_load(m) for m in models]
        for k, m in enumerate(self.models[1:], start=1):
            if m.type_map != self.models[0].type_map:
                raise ValueError(f"model {k} has type_map {m.type_map} but model 0 has "
                                 f"{self.models[0].type_map}: an ensemble needs one type_map")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if precision not in (None, "float64", "float32"):
            raise ValueError(f"precision must be None, 'float64' or 'float32', got {precision!r}")
        self.backend, self.precision = backend, precision
        self.ncalls = 0
        self._z_to_type = self._type_lookup(type_map)

    @property
    def model(self):
        """The model that gives energy, forces and stress (the first one)."""
        return self.models[0]

    def _type_lookup(self, type_map) -> np.ndarray:
        """Atomic number -> model type index (-1: unknown), a (119,) int array."""
        names = self.model.type_map
        if type_map is None:
            pairs = {s: i for i, s in enumerate(names)}
        elif isinstance(type_map, dict):
            pairs = {str(s): int(i) for s, i in type_map.items()}
        else:
            pairs = {str(s): i for i, s in enumerate(type_map)}
        lookup = np.full(len(ase.data.chemical_symbols), -1, dtype=np.int64)
        for sym, t in pairs.items():
            if not 0 <= t < self.model.ntypes:
                raise ValueError(f"type_map: {sym!r} -> type {t}, but the model has "
                                 f"{self.model.ntypes} types {names}")
            if sym in atomic_numbers:
                lookup[atomic_numbers[sym]] = t
        if type_map is not None and not (lookup >= 0).any():
            raise ValueError(f"type_map {type_map!r} names no chemical element")
        return lookup

    def atom_types(self, atoms) -> np.ndarray:
        """Model type index of every atom (natoms,); ``ValueError`` for unknown elements."""
        z = atoms.numbers
        atype = self._z_to_type[np.clip(z, 0, len(self._z_to_type) - 1)]
        if (atype < 0).any():
            bad = np.flatnonzero(atype < 0)
            syms = sorted({atoms[i].symbol for i in bad})
            known = [ase.data.chemical_symbols[i] for i in np.flatnonzero(self._z_to_type >= 0)]
            where = ", ".join(f"{s}: atoms {[int(i) for i in bad if atoms[i].symbol == s][:10]}"
                              for s in syms)
            raise ValueError(f"element(s) {syms} not known to the model (type_map "
                             f"{self.model.type_map}; recognised symbols {known}); {where}")
        return atype

    def check_state(self, atoms, tol=1e-15):
        """What changed since the stored atoms among what the model depends on:
        ``positions``, ``numbers``, ``cell``, ``pbc``, compared exactly (ASE's generic
        check compares every array with ``np.isclose`` and costs ~1 ms per call on 192
        atoms; charges and magnetic moments do not enter the model)."""
        old = self.atoms
        if old is None or len(old) != len(atoms):
            return list(all_changes)
        changes = []
        if not np.array_equal(old.positions, atoms.positions):
            changes.append("positions")
        if not np.array_equal(old.numbers, atoms.numbers):
            changes.append("numbers")
        if not np.array_equal(np.asarray(old.cell), np.asarray(atoms.cell)):
            changes.append("cell")
        if not np.array_equal(old.pbc, atoms.pbc):
            changes.append("pbc")
        return changes

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        vol = abs(float(np.linalg.det(np.asarray(atoms.cell))))
        if any(p in ("stress", "stresses") for p in properties) and not vol > 0.0:
            raise PropertyNotImplementedError(
                f"stress needs a cell with nonzero volume; this one is "
                f"{np.asarray(atoms.cell).tolist()} (pbc {atoms.pbc.tolist()})")
        atype = self.atom_types(atoms)
        x = atoms.positions
        box = evaluation_box(atoms.cell, atoms.pbc, x, self.model.rcut)
        outs = []
        for m in self.models:
            outs.append(m.evaluate(x[None], atype, None if box is None else box[None],
                                   precision=self.precision, backend=self.backend))
            self.ncalls += 1
        out = outs[0]
        energy = float(out["energy"][0])
        res = {"energy": energy, "free_energy": energy,
               "energies": np.asarray(out["atom_energy"][0], dtype=np.float64),
               "forces": np.asarray(out["forces"][0], dtype=np.float64)}
        if vol > 0.0:
            w = np.asarray(out["virial"][0], dtype=np.float64)
            res["stress"] = _voigt(-w / vol)
            res["stresses"] = _voigt(-np.asarray(out["atom_virial"][0], dtype=np.float64) / vol)
        if len(self.models) > 1:
            from symref.modeldevi import deviations

            natoms = len(atoms)
            d = deviations(np.stack([o["energy"] for o in outs]) / natoms,
                           np.stack([o["forces"] for o in outs]),
                           np.stack([o["virial"] for o in outs]) / natoms)
            res["model_devi"] = {k: (v[0] if k == "atom_devi_f" else float(v[0]))
                                 for k, v in d.items()}
        self.results = res

    def get_model_devi(self, atoms=None) -> dict:
        """Ensemble deviation for ``atoms`` (default: the last atoms); needs >= 2 models."""
        if len(self.models) < 2:
            raise ValueError("model deviation needs an ensemble: give SymrefCalculator "
                             "a list of at least two models")
        if atoms is None and self.atoms is None:
            raise ValueError("no atoms: pass atoms, or evaluate some first")
        if atoms is not None or "model_devi" not in self.results:
            self.get_property("energy", atoms)
        return dict(self.results["model_devi"])


def _voigt(s: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6) in Voigt order xx, yy, zz, yz, xz, xy; off-diagonal
    entries are the mean of the two (symmetrised)."""
    return np.stack([s[..., 0, 0], s[..., 1, 1], s[..., 2, 2],
                     0.5 * (s[..., 1, 2] + s[..., 2, 1]), 0.5 * (s[..., 0, 2] + s[..., 2, 0]),
                     0.5 * (s[..., 0, 1] + s[..., 1, 0])], axis=-1)
