r"""deepmd-kit's ``input.json`` for ``symref train``: the subset symref implements, checked.

Sections read (deepmd-kit's names and defaults):

* ``model``: ``type_map``, ``descriptor`` (se_e2_a), ``fitting_net`` (ener, dipole, polar) —
  see :func:`symref.model.build.build_model`;
* ``learning_rate``: ``type`` "exp", ``start_lr`` (1e-3), ``stop_lr`` (1e-8),
  ``decay_steps`` (5000), ``decay_rate``, ``warmup_steps``, ``smooth``;
* ``loss``: ``type`` "ener", ``start_pref_{e,f,v}`` / ``limit_pref_{e,f,v}``
  (deepmd-kit's defaults 0.02/1, 1000/1, 0/0); or, for a ``dipole``/``polar``
  fitting, ``type`` "tensor" with ``pref`` (global label) and ``pref_atomic``
  (atomic label), both default 1 and constant during training;
* ``training``: ``training_data`` / ``validation_data`` (``systems``,
  ``batch_size`` int or "auto" = ceil(32 / natoms)), ``numb_steps``, ``seed``,
  ``disp_file`` (lcurve.out), ``disp_freq`` (1000), ``save_freq`` (1000),
  ``save_ckpt`` (model.ckpt);
* ``optimizer`` (symref's own, optional): ``{"type": "adam"}`` (default, as
  deepmd-kit) or ``{"type": "lbfgs", "maxiter": numb_steps}`` with fixed
  prefactors ``limit_pref_*``; ``"time_limit"`` (seconds, both types) stops
  training at the first step past it, with a checkpoint.

Keys outside this subset are returned by :func:`read_input` as a list of
warnings (``section.key``), never ignored silently.  Relative system paths
are relative to the input file.
"""
from __future__ import annotations

import json
from pathlib import Path

KNOWN = {
    "": {"model", "learning_rate", "loss", "training", "optimizer", "_comment"},
    "learning_rate": {"type", "start_lr", "stop_lr", "decay_steps", "decay_rate", "warmup_steps",
                      "warmup_start_factor", "smooth", "scale_by_worker", "_comment"},
    "loss": {"type", "start_pref_e", "limit_pref_e", "start_pref_f", "limit_pref_f",
             "start_pref_v", "limit_pref_v", "pref", "pref_atomic", "_comment"},
    "training": {"training_data", "validation_data", "numb_steps", "seed", "disp_file",
                 "disp_freq", "save_freq", "save_ckpt", "disp_training", "time_training",
                 "profiling", "profiling_file", "_comment"},
    "training.training_data": {"systems", "batch_size", "_comment"},
    "training.validation_data": {"systems", "batch_size", "numb_btch", "_comment"},
    "optimizer": {"type", "maxiter", "time_limit", "_comment"},
}
LOSS_DEFAULTS = {"start_pref_e": 0.02, "limit_pref_e": 1.0, "start_pref_f": 1000.0,
                 "limit_pref_f": 1.0, "start_pref_v": 0.0, "limit_pref_v": 0.0}


def read_input(path):
    """``(config dict, warnings list)``; raises ValueError naming the file and key on bad input."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: input file not found") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: the top level must be a JSON object")
    for key in ("model", "training"):
        if key not in cfg:
            raise ValueError(f"{path}: missing section {key!r}")
    warnings = []
    for section, known in KNOWN.items():
        node = cfg
        for part in [p for p in section.split(".") if p]:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            for k in node:
                if k not in known:
                    warnings.append(f"{path}: unknown key '{section + '.' if section else ''}{k}' "
                                    "is not used by symref")
    lr = cfg.get("learning_rate", {})
    if lr.get("type", "exp") != "exp":
        raise ValueError(f"{path}: learning_rate.type {lr.get('type')!r}: only 'exp' is implemented")
    loss = cfg.get("loss", {})
    ftype = cfg["model"].get("fitting_net", {}).get("type", "ener") \
        if isinstance(cfg["model"], dict) else "ener"
    want = "tensor" if ftype in ("dipole", "polar") else "ener"
    if loss.get("type", want) != want:
        raise ValueError(f"{path}: loss.type {loss.get('type')!r} does not fit a {ftype!r} "
                         f"model (use {want!r})")
    for k in ("pref", "pref_atomic"):
        v = loss.get(k, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{path}: loss.{k} must be a non-negative number, got {v!r}")
    opt = cfg.get("optimizer", {})
    if opt.get("type", "adam") not in ("adam", "lbfgs"):
        raise ValueError(f"{path}: optimizer.type must be 'adam' or 'lbfgs', got {opt.get('type')!r}")
    tl = opt.get("time_limit")
    if tl is not None and (isinstance(tl, bool) or not isinstance(tl, (int, float)) or tl <= 0):
        raise ValueError(f"{path}: optimizer.time_limit must be a positive number of seconds, "
                         f"got {tl!r}")
    tr = cfg["training"]
    for name in ("training_data",):
        if name not in tr or "systems" not in tr[name]:
            raise ValueError(f"{path}: training.{name}.systems is required")
    base = path.parent

    def systems(entry):
        s = entry.get("systems", [])
        s = [s] if isinstance(s, str) else list(s)
        return [str(p if Path(p).is_absolute() else base / p) for p in s]

    tr["training_data"]["systems"] = systems(tr["training_data"])
    if "validation_data" in tr:
        tr["validation_data"]["systems"] = systems(tr["validation_data"])
    return cfg, warnings
