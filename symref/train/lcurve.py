r"""``lcurve.out`` in deepmd-kit's layout: the same columns on every row, whatever the batch.

The columns follow from the loss, as in deepmd-kit 3.x (``deepmd/pt/loss``), never
from the labels a batch happens to carry:

* energy loss: ``rmse`` (√loss) always; ``rmse_e`` (eV/atom), ``rmse_f`` (eV/Å),
  ``rmse_v`` (eV/atom), ``rmse_ae`` (eV), ``rmse_pf`` (eV/Å) when the start *and*
  limit prefactors of that term are nonzero (deepmd-kit's ``has_e`` ... ``has_pf``);
* tensor loss: ``rmse_global_<name>`` (per atom) when ``pref`` > 0,
  ``rmse_local_<name>`` when ``pref_atomic`` > 0, with deepmd-kit's tensor names:
  ``dipole``, and ``polar`` for a polarizability (:data:`TENSOR_NAME`).

Keys sorted; with validation data each key has a ``_val`` and a ``_trn``
column (in that order), then ``lr``.  A batch without the label of a column
gets ``nan`` there (deepmd-kit's ``display_if_exist``), and the second header
line says so, so ``np.loadtxt`` and ``symref plot`` read every file.  Lines are
``%7d`` then ``   %11.2e %11.2e`` per key, then ``   %8.1e``, flushed one by one.

Restarting from a checkpoint of step s keeps the rows with step <= s and drops
the later ones (written after the checkpoint by a run that was then killed), so
no step appears twice.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

#: deepmd-kit's ``tensor_name`` of a tensor loss, by symref's ``var_name``
TENSOR_NAME = {"dipole": "dipole", "polarizability": "polar"}

NAN_NOTE = "# If there is no available reference data, rmse_*_{val,trn} will print nan\n"


def lcurve_keys(pref_start, pref_limit, var_name: str | None = None) -> list[str]:
    """The displayed error names of a loss (see the module docstring); ``var_name``
    ("dipole"/"polarizability") for a tensor loss."""
    if var_name is not None:
        name, keys = TENSOR_NAME.get(var_name, var_name), []
        if pref_start.pref > 0:
            keys.append(f"rmse_global_{name}")
        if pref_start.pref_atomic > 0:
            keys.append(f"rmse_local_{name}")
        return sorted(keys)
    keys = ["rmse"]
    for q in ("e", "f", "v", "ae", "pf"):
        if getattr(pref_start, f"pref_{q}", 0) != 0 and getattr(pref_limit, f"pref_{q}", 0) != 0:
            keys.append(f"rmse_{q}")
    return sorted(keys)


def display_row(errs: dict, keys: list[str], var_name: str | None = None) -> dict:
    """``{key: value}`` for every column; ``nan`` where ``errs`` (from
    :func:`symref.train.fit.errors`) has no such error (no label in the batch)."""
    if var_name is not None:  # tensor_errors' names -> deepmd-kit's
        name = TENSOR_NAME.get(var_name, var_name)
        errs = {f"rmse_global_{name}": errs.get("rmse_gl", math.nan),
                f"rmse_local_{name}": errs.get("rmse_lc", math.nan)}
    return {k: float(errs.get(k, math.nan)) for k in keys}


def _step_of(line: str) -> int | None:
    s = line.split()
    if not s or line.startswith("#"):
        return None
    try:
        return int(s[0])
    except ValueError:
        return None


class Lcurve:
    """``lcurve.out`` writer with fixed columns ``keys`` (:func:`lcurve_keys`).

    ``restart_step``: continue an existing file, dropping its rows past that step.
    """

    def __init__(self, path, keys: list[str], validation: bool, restart_step: int | None = None):
        self.path, self.keys, self.validation = Path(path), list(keys), validation
        self.header_done = False
        if restart_step is not None and self.path.exists():
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            kept = [ln for ln in lines if (_step_of(ln) is None and ln.strip())
                    or (_step_of(ln) is not None and _step_of(ln) <= restart_step)]
            self.header_done = bool(kept) and kept[0].startswith("#")
            if self.header_done and kept[0].split() != self._header().split():
                raise ValueError(f"{self.path}: its columns ({kept[0].strip()}) are not the "
                                 f"restarted run's ({self._header().strip()}); the loss or "
                                 "the validation data changed: use another disp_file")
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(kept), encoding="utf-8")
            os.replace(tmp, self.path)
        self.fh = open(self.path, "a" if restart_step is not None else "w", encoding="utf-8")

    def write(self, step: int, lr: float, trn: dict, val: dict | None):
        """One row: ``trn``/``val`` map every key to a number (``nan`` allowed)."""
        if not self.header_done:
            self.fh.write(self._header() + NAN_NOTE)
            self.header_done = True
        line = f"{step:7d}"
        for k in self.keys:
            line += ("   %11.2e %11.2e" % ((val or {}).get(k, math.nan), trn.get(k, math.nan))
                     if self.validation else "   %11.2e" % trn.get(k, math.nan))
        self.fh.write(line + f"   {lr:8.1e}\n")
        self.fh.flush()

    def _header(self) -> str:
        h = "# {:5s}".format("step")
        for k in self.keys:
            h += ("   %11s %11s" % (k + "_val", k + "_trn")) if self.validation \
                else ("   %11s" % (k + "_trn"))
        return h + "   {:8s}\n".format("lr")

    def close(self):
        self.fh.close()
