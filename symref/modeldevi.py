r"""Model deviation of an ensemble, as ``dp model-devi`` (deepmd-kit 3.x) defines and writes it.

For M models evaluated on the same frame (forces :math:`F^{(m)}_i`, virials
:math:`W^{(m)}`, energies :math:`E^{(m)}`, N atoms):

.. math::

    \epsilon_{F,i} = \sqrt{\tfrac1M \sum_m \lVert F^{(m)}_i - \bar F_i\rVert^2},\qquad
    \bar F_i = \tfrac1M \sum_m F^{(m)}_i

(the population standard deviation of each Cartesian component, then the
norm over x, y, z), and per frame ``max_devi_f`` / ``min_devi_f`` /
``avg_devi_f`` = max / min / mean over atoms of :math:`\epsilon_{F,i}` (eV/Å).
The virial is first divided by N (eV per atom); for each of its 9 components
:math:`\epsilon_{W,ab}` is the standard deviation over models, and
``max_devi_v`` / ``min_devi_v`` = max / min over the 9 components,
``avg_devi_v`` = :math:`\sqrt{\sum_{ab}\epsilon_{W,ab}^2}/3` (the RMS over
the 9 components).  ``devi_e`` is the standard deviation of E/N (eV/atom).

Relative deviations (``relative=ε_f``, ``relative_v=ε_v``, deepmd-kit's
``-r``/``--relative_v``, Eqs. 71-72 of the DeePMD-kit v2 paper):
:math:`\epsilon_{F,i} / (\lVert\bar F_i\rVert + ε_f)` and
:math:`\epsilon_{W,ab} / (\lVert\bar W\rVert_F/N + ε_v)`.  (deepmd-kit 3.x's
NumPy code divides the (nframes, 9) array by an (nframes,) array, which only
broadcasts for 1 or 9 frames; here each frame is divided by its own norm.)

File layout (:func:`write_model_devi`, identical to deepmd-kit's
``write_model_devi_out``): per system a header ``# <system>`` and
``# step      max_devi_v         min_devi_v ...  devi_e`` (columns
``%12d`` then ``%19.6e``), one row per frame with ``step = frame index ×
frequency``; with ``atomic`` one more column per atom (``atm_devi_f(N)``).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from symref.io.data import find_systems

__all__ = ["deviations", "model_deviation", "write_model_devi", "format_model_devi",
           "COLUMNS", "find_systems", "system_model_devi"]

#: columns after ``step``, in file order
COLUMNS = ("max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f",
           "devi_e")


def deviations(energies, forces, virials, *, relative: float | None = None,
               relative_v: float | None = None) -> dict:
    """Deviation statistics of an ensemble.

    Parameters
    ----------
    energies : (M, nf) energies per atom, eV/atom.
    forces : (M, nf, natoms, 3) eV/Å.
    virials : (M, nf, 3, 3) or (M, nf, 9) virials per atom, eV/atom.
    relative, relative_v : optional levels for relative deviations (see module).

    Returns
    -------
    dict with ``max_devi_v``, ``min_devi_v``, ``avg_devi_v``, ``max_devi_f``,
    ``min_devi_f``, ``avg_devi_f``, ``devi_e`` (each (nf,)) and
    ``atom_devi_f`` (nf, natoms).
    """
    e = np.asarray(energies, dtype=np.float64)
    f = np.asarray(forces, dtype=np.float64)
    v = np.asarray(virials, dtype=np.float64)
    if f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"forces must have shape (nmodels, nframes, natoms, 3), got {f.shape}")
    M, nf = f.shape[:2]
    if M < 1:
        raise ValueError("no models")
    v = v.reshape(v.shape[0], v.shape[1], -1) if v.ndim >= 2 else v
    if v.shape != (M, nf, 9):
        raise ValueError(f"virials must have shape ({M}, {nf}, 3, 3) or ({M}, {nf}, 9), "
                         f"got {np.shape(virials)}")
    if e.shape != (M, nf):
        raise ValueError(f"energies must have shape ({M}, {nf}), got {e.shape}")
    fmean = f.mean(axis=0)  # nf x natoms x 3
    atom_f = np.sqrt(((f - fmean) ** 2).mean(axis=0).sum(axis=-1))  # nf x natoms
    if relative is not None:
        atom_f = atom_f / (np.linalg.norm(fmean, axis=-1) + relative)
    vmean = v.mean(axis=0)  # nf x 9
    dv = np.sqrt(((v - vmean) ** 2).mean(axis=0))  # nf x 9
    if relative_v is not None:
        dv = dv / (np.linalg.norm(vmean, axis=-1, keepdims=True) + relative_v)
    return {"max_devi_v": dv.max(axis=-1), "min_devi_v": dv.min(axis=-1),
            "avg_devi_v": np.linalg.norm(dv, axis=-1) / 3.0,
            "max_devi_f": atom_f.max(axis=-1), "min_devi_f": atom_f.min(axis=-1),
            "avg_devi_f": atom_f.mean(axis=-1),
            "devi_e": np.sqrt(((e - e.mean(axis=0)) ** 2).mean(axis=0)),
            "atom_devi_f": atom_f}


def model_deviation(models, coord, atype, box=None, *, frequency: int = 1,
                    relative: float | None = None, relative_v: float | None = None,
                    atomic: bool = False, backend: str = "numba", progress=None) -> np.ndarray:
    """Evaluate every model on the frames and return deepmd-kit's deviation table.

    ``models``: DeepPot objects sharing one ``type_map``; ``coord``, ``atype``,
    ``box`` as :meth:`symref.model.deeppot.DeepPot.evaluate` (box None: molecule).
    ``progress``: optional callable ``progress(k, nmodels)`` after each model.

    Returns (nf, 8) or, with ``atomic``, (nf, 8 + natoms): ``step`` (frame x
    ``frequency``), then :data:`COLUMNS`, then the per-atom force deviations.
    """
    from symref.model.base import normalize_inputs

    models = list(models)
    if len(models) < 2:
        raise ValueError(f"model deviation needs at least 2 models, got {len(models)}")
    for k, m in enumerate(models[1:], start=1):
        if m.type_map != models[0].type_map:
            raise ValueError(f"model {k} has type_map {m.type_map} but model 0 has "
                             f"{models[0].type_map}: the models must share one type_map")
    coord, atype, box = normalize_inputs(coord, atype, box, models[0].ntypes)
    nf, natoms, _ = coord.shape
    es, fs, vs = [], [], []
    for k, m in enumerate(models):
        out = m.evaluate(coord, atype, box, backend=backend)
        es.append(out["energy"] / natoms)
        fs.append(out["forces"])
        vs.append(out["virial"] / natoms)
        if progress is not None:
            progress(k + 1, len(models))
    d = deviations(np.stack(es), np.stack(fs), np.stack(vs), relative=relative,
                   relative_v=relative_v)
    cols = [np.arange(nf, dtype=np.float64) * frequency] + [d[c] for c in COLUMNS]
    table = np.stack(cols, axis=1)
    if atomic:
        table = np.concatenate([table, d["atom_devi_f"]], axis=1)
    return table


def format_model_devi(blocks, atomic: bool = False) -> str:
    """Text of a model-deviation file: ``blocks`` is a list of ``(header, table)``
    (header: usually the system path; table from :func:`model_deviation`)."""
    import io

    buf = io.BytesIO()
    for header, table in blocks:
        table = np.asarray(table)
        if table.ndim != 2 or table.shape[1] < 8 or (table.shape[1] > 8) != atomic:
            raise ValueError(f"table for {header!r} has shape {table.shape}; expected "
                             f"(nframes, 8){' + natoms columns (atomic)' if atomic else ''}")
        head = f"{header}\n{'step':10s}" + "".join(f"{c:19s}" for c in COLUMNS)
        if atomic:
            head += f"{'atm_devi_f(N)':19s}"
        np.savetxt(buf, table, fmt=["%12d"] + ["%19.6e"] * (table.shape[1] - 1),
                   delimiter="", header=head)
    return buf.getvalue().decode()


def write_model_devi(path, blocks, atomic: bool = False) -> None:
    """Write :func:`format_model_devi` to ``path`` atomically."""
    from symref.io.model_file import atomic_write

    text = format_model_devi(blocks, atomic=atomic)
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text))


def system_model_devi(models, system_path, **kwargs) -> np.ndarray:
    """:func:`model_deviation` of every frame of one npy system, types mapped by name
    onto the models' ``type_map``."""
    from symref.io.data import load_system, map_types

    s = map_types(load_system(system_path), models[0].type_map)
    return model_deviation(models, s.coord, s.atype, s.box, **kwargs)


def cli(args) -> int:
    """``symref model-devi -m M1 M2 ... -s SYSTEM ... -o model_devi.out``."""
    from symref.io.model_file import load_model

    models = [load_model(p) for p in args.models]
    systems = [p for s in args.system for p in find_systems(s)]
    blocks = []
    for k, sp in enumerate(systems):
        print(f"symref model-devi: system {k + 1}/{len(systems)} {sp}", file=sys.stderr)
        table = system_model_devi(
            models, sp, frequency=args.frequency, relative=args.relative,
            relative_v=args.relative_v, atomic=args.atomic, backend=args.backend,
            progress=lambda i, n: print(f"  model {i}/{n} evaluated", file=sys.stderr))
        blocks.append((str(sp), table))
    write_model_devi(args.output, blocks, atomic=args.atomic)
    nf = sum(t.shape[0] for _, t in blocks)
    fmax = max(float(t[:, 4].max()) for _, t in blocks)
    print(f"symref model-devi: {len(models)} models, {len(systems)} system(s), {nf} frames; "
          f"largest max_devi_f {fmax:.4g} eV/Å; wrote {args.output}")
    return 0
