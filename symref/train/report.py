r"""``symref test`` and ``symref plot``: errors of a model on labelled data, parity plots,
learning curves.

Errors follow ``dp test``: for energies the total (eV) and per atom (eV/atom,
the total divided by the number of atoms), for forces over all components
(eV/Å), for virials the total (eV) and per atom.  MAE = mean |pred − label|,
RMSE = sqrt(mean (pred − label)²).  Figures are PNG files written atomically.
"""
from __future__ import annotations

import numpy as np

from symref.io.model_file import atomic_write


def errors_table(model, systems, nframes: int | None = None) -> dict:
    """``{quantity: (mae, rmse)}`` pooled over ``systems`` (first ``nframes`` of each),
    plus ``"pairs"``: the (label, prediction) arrays for parity plots."""
    acc = {"energy": [], "energy/atom": [], "force": [], "virial": [], "virial/atom": []}
    pairs = {"energy/atom": ([], []), "force": ([], []), "virial/atom": ([], [])}
    for s in systems:
        if s.energy is None and s.force is None:
            raise ValueError(f"{s.name or 'system'}: no energy or force labels to test against")
        k = s.nframes if nframes is None else min(nframes, s.nframes)
        ev = model.evaluate(s.coord[:k], s.atype, None if s.box is None else s.box[:k])
        n = s.natoms
        if s.energy is not None:
            d = ev["energy"] - s.energy[:k]
            acc["energy"].append(d)
            acc["energy/atom"].append(d / n)
            pairs["energy/atom"][0].append(s.energy[:k] / n)
            pairs["energy/atom"][1].append(ev["energy"] / n)
        if s.force is not None:
            acc["force"].append((ev["forces"] - s.force[:k]).ravel())
            pairs["force"][0].append(s.force[:k].ravel())
            pairs["force"][1].append(ev["forces"].ravel())
        if s.virial is not None:
            d = (ev["virial"] - s.virial[:k]).ravel()
            acc["virial"].append(d)
            acc["virial/atom"].append(d / n)
            pairs["virial/atom"][0].append(s.virial[:k].ravel() / n)
            pairs["virial/atom"][1].append(ev["virial"].ravel() / n)
    out = {}
    for key, parts in acc.items():
        if parts:
            d = np.concatenate(parts)
            out[key] = (float(np.mean(np.abs(d))), float(np.sqrt(np.mean(d * d))))
    out["pairs"] = {k: (np.concatenate(a), np.concatenate(b)) for k, (a, b) in pairs.items() if a}
    return out


def format_errors(table: dict) -> str:
    units = {"energy": "eV", "energy/atom": "eV/atom", "force": "eV/Å", "virial": "eV",
             "virial/atom": "eV/atom"}
    lines = [f"{'quantity':14s} {'MAE':>12s} {'RMSE':>12s}  unit"]
    for key in ("energy", "energy/atom", "force", "virial", "virial/atom"):
        if key in table:
            mae, rmse = table[key]
            lines.append(f"{key:14s} {mae:12.4e} {rmse:12.4e}  {units[key]}")
    return "\n".join(lines)


def _save(fig, path):
    def write(tmp):
        fig.savefig(tmp, format="png", dpi=120)

    atomic_write(path, write)


def parity_plot(table: dict, path) -> None:
    """Label against prediction for energy per atom, force components and virial per atom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(table["pairs"].items())
    fig, axes = plt.subplots(1, len(items), figsize=(4.2 * len(items), 4))
    axes = np.atleast_1d(axes)
    units = {"energy/atom": "eV/atom", "force": "eV/Å", "virial/atom": "eV/atom"}
    for ax, (key, (lab, pred)) in zip(axes, items):
        lo, hi = float(min(lab.min(), pred.min())), float(max(lab.max(), pred.max()))
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.plot(lab, pred, ".", ms=2, alpha=0.5)
        ax.set_xlabel(f"label {key} ({units[key]})")
        ax.set_ylabel(f"symref {key} ({units[key]})")
        ax.set_title(f"{key}: RMSE {table[key][1]:.3g}")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def read_lcurve(path):
    """``(column names, data array)`` of a deepmd-kit/symref ``lcurve.out``."""
    with open(path, encoding="utf-8") as fh:
        header = fh.readline()
    if not header.startswith("#"):
        raise ValueError(f"{path}: no header line starting with '#' (not an lcurve.out)")
    names = header[1:].split()
    data = np.loadtxt(path, comments="#", ndmin=2)
    if data.shape[1] != len(names):
        raise ValueError(f"{path}: {data.shape[1]} columns but the header names {len(names)}")
    return names, data


def plot_lcurve(path, out) -> None:
    """Learning curves (log scale) of every rmse column against the step, and the learning rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, data = read_lcurve(path)
    step = data[:, names.index("step")]
    groups = sorted({n.rsplit("_", 1)[0] for n in names if n.startswith("rmse")})
    fig, axes = plt.subplots(1, len(groups) + 1, figsize=(4 * (len(groups) + 1), 3.6))
    for ax, g in zip(axes, groups):
        for suffix in ("trn", "val"):
            col = f"{g}_{suffix}"
            if col in names:
                ax.semilogy(step, data[:, names.index(col)], label=suffix)
        ax.set_xlabel("step")
        ax.set_title(g)
        ax.legend()
    if "lr" in names and np.isnan(data[:, names.index("lr")]).all():  # L-BFGS: no lr
        axes[-1].text(0.5, 0.5, "no learning rate\n(L-BFGS)", ha="center", va="center")
        axes[-1].set_axis_off()
    elif "lr" in names:
        axes[-1].semilogy(step, data[:, names.index("lr")])
        axes[-1].set_title("learning rate")
        axes[-1].set_xlabel("step")
    fig.tight_layout()
    _save(fig, out)
    plt.close(fig)


_VIRIAL_COLUMNS = " ".join([f"data_v{a}{b}" for a in "xyz" for b in "xyz"]
                           + [f"pred_v{a}{b}" for a in "xyz" for b in "xyz"])


def detail_files(model, systems, prefix, nframes: int | None = None) -> list:
    """``dp test --detail-file PREFIX``'s files: ``PREFIX.e.out`` (label and predicted
    energy per frame, eV), ``.e_peratom.out`` (the same / natoms), ``.f.out`` (label and
    predicted force per atom, eV/Å), ``.v.out`` and ``.v_peratom.out`` (virial, eV; when
    the systems have virials).  As deepmd-kit 3.2: ``np.savetxt`` rows, the first system
    writes the header ``# SYSTEM: data_e pred_e`` (etc.), later systems are appended
    without one.  Each file is written atomically.  Returns the paths written."""
    from pathlib import Path

    parts: dict = {}
    for s in systems:
        k = s.nframes if nframes is None else min(nframes, s.nframes)
        ev = model.evaluate(s.coord[:k], s.atype, None if s.box is None else s.box[:k])
        n = s.natoms
        header = {".e.out": "data_e pred_e", ".e_peratom.out": "data_e pred_e",
                  ".f.out": "data_fx data_fy data_fz pred_fx pred_fy pred_fz",
                  ".v.out": _VIRIAL_COLUMNS, ".v_peratom.out": _VIRIAL_COLUMNS}
        rows = {}
        if s.energy is not None:
            pe = np.stack([s.energy[:k], ev["energy"]], axis=1)  # k x 2
            rows[".e.out"], rows[".e_peratom.out"] = pe, pe / n
        if s.force is not None:
            rows[".f.out"] = np.concatenate([s.force[:k].reshape(-1, 3),
                                             ev["forces"].reshape(-1, 3)], axis=1)  # k·n x 6
        if s.virial is not None:
            pv = np.concatenate([s.virial[:k].reshape(-1, 9), ev["virial"].reshape(-1, 9)],
                                axis=1)  # k x 18
            rows[".v.out"], rows[".v_peratom.out"] = pv, pv / n
        for suffix, a in rows.items():
            if suffix not in parts:
                parts[suffix] = (f"{s.name}: {header[suffix]}", [])
            parts[suffix][1].append(a)
    written = []
    for suffix, (head, arrays) in parts.items():
        path = Path(prefix).with_suffix(suffix)  # as deepmd-kit: "out" -> "out.e.out"

        def write(tmp, head=head, arrays=arrays):
            with open(tmp, "w", encoding="utf-8") as fh:
                np.savetxt(fh, np.concatenate(arrays), header=head)

        atomic_write(path, write)
        written.append(path)
    return written
