r"""deepmd-kit's ``input.json`` for ``symref train``, read as ``dp train`` reads it.

:func:`read_input` parses the file, then :func:`symref.io.inputschema.normalize`
fills in deepmd-kit 3.x's defaults and checks every key of every section
(unknown keys refused with the closest known one, keys deepmd-kit knows but
symref does not implement refused by name unless at their default, types and
ranges checked with the key path).  What symref does with each section:

* ``model``: ``type_map``, ``descriptor`` (se_e2_a, se_e2_r, se_e3, hybrid; ``sel`` a list or
  ``"auto"``/``"auto:RATIO"``, resolved from the training data by
  :func:`symref.io.neighbor_stat.resolve_sel`), ``fitting_net`` (ener, dipole,
  polar), ``data_stat_nbatch``, ``pair_exclude_types``, ``atom_exclude_types``,
  ``descriptor.set_davg_zero``, ``fitting_net.rcond`` —
  see :func:`symref.model.build.build_model`;
* ``learning_rate``: ``type`` "exp" or "cosine", ``start_lr`` (required), ``stop_lr`` (5e-8),
  ``decay_steps`` (5000), ``decay_rate``, ``warmup_steps``, ``warmup_start_factor``,
  ``smooth``;
* ``loss``: ``type`` "ener" with ``start_pref_{e,f,v}`` / ``limit_pref_{e,f,v}``
  (0.02/1, 1000/1, 0/0); or, for a ``dipole``/``polar`` fitting, ``type``
  "tensor" with ``pref`` and ``pref_atomic`` (both required, as in deepmd-kit;
  constant during training);
* ``training``: ``training_data`` / ``validation_data`` (``systems``,
  ``batch_size`` int, "auto" = ceil(32 / natoms) or "auto:N" = ceil(N / natoms),
  ``numb_btch``), ``numb_steps`` (required), ``seed`` (0 when absent: symref is
  deterministic), ``disp_file``, ``disp_freq``, ``save_freq``, ``save_ckpt``;
* ``optimizer``: deepmd-kit's ``{"type": "Adam"}`` (default; β = (0.9, 0.999),
  no weight decay), or symref's ``{"type": "lbfgs", "maxiter", "maxcor", "standardize"}``
  (``maxiter`` defaults to ``numb_steps``; the limit prefactors are used;
  ``maxcor`` 50 and ``standardize`` true: :func:`symref.train.fit.fit_lbfgs`); ``"time_limit"``
  (seconds, both types, symref's) stops training at the first step past it,
  with a checkpoint.

Relative system paths are relative to the input file.
"""
from __future__ import annotations

import json
from pathlib import Path

from symref.io.inputschema import normalize


def read_input(path):
    """``(config dict, warnings list)``: the normalised configuration (every default
    filled in) and the keys set to a value that has no effect in symref.

    Raises ValueError/TypeError naming the file and the key path on bad input.
    """
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: input file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    try:
        cfg, warnings = normalize(cfg)
    except (ValueError, TypeError) as e:
        raise type(e)(f"{path}: {e}") from None
    base = path.parent

    def systems(entry):
        s = entry["systems"]
        s = [s] if isinstance(s, str) else list(s)
        return [str(p if Path(p).is_absolute() else base / p) for p in s]

    tr = cfg["training"]
    tr["training_data"]["systems"] = systems(tr["training_data"])
    if tr["validation_data"] is not None:
        tr["validation_data"]["systems"] = systems(tr["validation_data"])
    return cfg, [f"{path}: {w}" for w in warnings]


def batch_size(spec, natoms: int) -> int:
    """deepmd-kit's batch size of a system of ``natoms`` atoms: an int as given,
    ``"auto"`` = ceil(32 / natoms), ``"auto:N"`` = ceil(N / natoms)."""
    if isinstance(spec, int):
        return spec
    n = 32 if spec == "auto" else int(spec.split(":")[1])
    return max(1, -(-n // max(natoms, 1)))
