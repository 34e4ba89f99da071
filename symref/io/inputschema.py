r"""deepmd-kit 3.x's ``input.json`` schema, as symref reads it: keys, types, defaults, ranges.

One table per section (:data:`SECTIONS`, key path -> ``{key: Key}``); the
descriptor and fitting sections are picked by their ``type`` from
:data:`DESCRIPTORS` / :data:`FITTINGS` (add a descriptor by adding an entry
there).  Defaults are deepmd-kit 3.2's (``deepmd.utils.argcheck``; the test
``tests/test_inputschema.py`` compares :func:`normalize` with deepmd-kit's own
``normalize`` key by key).

Every key has a status:

* ``"ok"``: implemented;
* ``"default"``: known to deepmd-kit, implemented only at its default value —
  any other value is an error naming the key (never silently ignored);
* ``"noop"``: known to deepmd-kit, has no effect on the trained model
  (logging, profiling, checkpoint rotation, GPU switches); a value other than
  the default gives a warning naming the key.

A key deepmd-kit does not know is an error naming it and the closest known
key (:mod:`difflib`, as ``dp train``'s "Did you mean"); a wrong type or a value
out of range is an error naming the key path.  Keys starting with ``_`` are
comments (deepmd-kit trims them).

symref's own additions, outside deepmd-kit's schema: ``optimizer.type``
``"lbfgs"`` (with ``maxiter``, ``maxcor`` and ``standardize``), ``optimizer.time_limit``
(seconds, any type).
"""
from __future__ import annotations

import copy
import difflib
import math
from dataclasses import dataclass
from typing import Any, Callable

from symref.reference.activation import ACTIVATIONS, silut_threshold

REQUIRED = object()  # no default: the key must be given
ABSENT = object()  # no default: the key stays absent (deepmd-kit's "optional, no default")

#: deepmd-kit's activation names (deepmd.common.VALID_ACTIVATION); symref implements all
#: (symref.reference.activation.ACTIVATIONS), silut also as deepmd-kit's network code reads
#: it: silut:T, custom_silu[:T] (threshold T)
DP_ACTIVATIONS = ("tanh", "gelu", "gelu_tf", "relu", "relu6", "softplus", "sigmoid", "silu",
                  "silut", "none", "linear")
SYMREF_ACTIVATIONS = tuple(a for a in DP_ACTIVATIONS if a in ACTIVATIONS)
DP_PRECISIONS = ("default", "float16", "bfloat16", "float32", "float64")
SYMREF_PRECISIONS = ("default", "float32", "float64")


@dataclass(frozen=True)
class Key:
    """One key: accepted JSON types (``"float"`` accepts ints, ``"int"`` refuses
    bools), default, status, an extra check ``check(value) -> message or None``,
    and deepmd-kit's aliases (renamed to the key)."""

    types: tuple
    default: Any = ABSENT
    status: str = "ok"
    check: Callable | None = None
    alias: tuple = ()


def _is(value, kind: str) -> bool:
    if kind == "none":
        return value is None
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"str": str, "list": list, "dict": dict}[kind])


# --- checks: each returns None or what is wrong ---------------------------------------
def _ge0(v):
    return None if math.isfinite(v) and v >= 0 else "must be a finite number >= 0"


def _gt0(v):
    return None if math.isfinite(v) and v > 0 else "must be a finite number > 0"


def _int_ge1(v):
    return None if v >= 1 else "must be >= 1"


def _int_ge0(v):
    return None if v >= 0 else "must be >= 0"


def _widths(v):
    if not v or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v):
        return "must be a non-empty list of positive ints (layer widths)"
    return None


def _one_of(*allowed, implemented=None):
    def check(v):
        if v not in allowed:
            return f"must be one of {list(allowed)}"
        if implemented is not None and v not in implemented:
            return f"{v!r} is known to deepmd-kit but not implemented in symref " \
                   f"(symref implements {list(implemented)})"
        return None
    return check


def _sel(v):
    if isinstance(v, str):
        if v == "auto":
            return None
        if v.startswith("auto:"):
            try:
                f = float(v[5:])
            except ValueError:
                f = -1.0
            return None if f > 0 and math.isfinite(f) else \
                "'auto:FACTOR' needs a positive number FACTOR"
        return "must be a list of ints, 'auto' or 'auto:FACTOR'"
    if any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in v):
        return "must be a list of non-negative ints (one per type), 'auto' or 'auto:FACTOR'"
    return None


def _pairs(v):
    if any(not isinstance(p, list) or len(p) != 2
           or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in p) for p in v):
        return "must be a list of [type, type] pairs of non-negative ints"
    return None


def _ints(v):
    if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in v):
        return "must be a list of non-negative ints (types)"
    return None


def _batch(v):
    if isinstance(v, str):
        if v == "auto" or (v.startswith("auto:") and v[5:].isdigit() and int(v[5:]) > 0):
            return None
        return "must be a positive int, 'auto' or 'auto:N'"
    if isinstance(v, list):
        return "a list (one batch size per system) is known to deepmd-kit but not " \
               "implemented in symref; give one int or 'auto'"
    return None if v >= 1 else "must be >= 1"


def _systems(v):
    if isinstance(v, list) and (not v or any(not isinstance(s, str) for s in v)):
        return "must be a path or a non-empty list of paths"
    return None


def _activation(v):
    """One of :data:`DP_ACTIVATIONS`, or silut with a threshold (``silut:T``,
    ``custom_silu[:T]``, T a finite number)."""
    try:
        if silut_threshold(v) is not None:
            return None
    except ValueError as e:
        return str(e)
    return _one_of(*DP_ACTIVATIONS, implemented=SYMREF_ACTIVATIONS)(v)


ACT = Key(("str",), "tanh", check=_activation)
PREC = Key(("str",), "default", check=_one_of(*DP_PRECISIONS, implemented=SYMREF_PRECISIONS))
SEED = Key(("none", "int"), ABSENT)  # a section's own stream (symref.model.build)
FLOAT_GE0 = Key(("float",), 0.0, check=_ge0)


def _pref(default, status="ok"):
    return Key(("float",), default, status, _ge0)


SE_E2_A = {
    "sel": Key(("str", "list"), "auto", check=_sel),
    "rcut": Key(("float",), 6.0, check=_gt0),
    "rcut_smth": Key(("float",), 0.5, check=_ge0),
    "neuron": Key(("list",), [10, 20, 40], check=_widths),
    "axis_neuron": Key(("int",), 4, check=_int_ge1, alias=("n_axis_neuron",)),
    "activation_function": ACT,
    "resnet_dt": Key(("bool",), False),
    "type_one_side": Key(("bool",), False),
    "precision": PREC,
    "trainable": Key(("bool",), True, "default"),
    "seed": SEED,
    "exclude_types": Key(("list",), [], check=_pairs),
    "env_protection": FLOAT_GE0,
    "set_davg_zero": Key(("bool",), False),
}

#: se_e2_r (deepmd-kit's se_r): se_e2_a's keys less ``axis_neuron``
SE_E2_R = {k: v for k, v in SE_E2_A.items() if k != "axis_neuron"}
#: se_e3 (se_at, se_a_3be, se_t): se_e2_a's keys less ``axis_neuron`` and ``type_one_side``
SE_E3 = {k: v for k, v in SE_E2_R.items() if k != "type_one_side"}
#: hybrid: a list of descriptor sections, each checked as its own type (:func:`_descriptor`)
HYBRID = {"list": Key(("list",), REQUIRED)}

#: descriptor ``type`` -> its keys (``type`` itself excluded); aliases of the type name
DESCRIPTORS = {"se_e2_a": SE_E2_A, "se_e2_r": SE_E2_R, "se_e3": SE_E3, "hybrid": HYBRID}
DESCRIPTOR_ALIASES = {"se_a": "se_e2_a", "se_r": "se_e2_r", "se_at": "se_e3",
                      "se_a_3be": "se_e3", "se_t": "se_e3"}
#: descriptor types deepmd-kit 3.x knows that symref does not implement (yet)
DP_DESCRIPTORS = ("loc_frame", "dpa4c", "dpa4", "se_a_tpe", "se_atten", "se_e3_tebd",
                  "se_atten_v2", "dpa2", "dpa3", "se_a_ebd_v2", "se_a_mask")

_FIT_COMMON = {
    "numb_fparam": Key(("int",), 0, "default"),
    "numb_aparam": Key(("int",), 0, "default"),
    "default_fparam": Key(("none", "list"), None, "default"),
    "dim_case_embd": Key(("int",), 0, "default"),
    "neuron": Key(("list",), [120, 120, 120], check=_widths, alias=("n_neuron",)),
    "activation_function": ACT,
    "resnet_dt": Key(("bool",), True),
    "precision": PREC,
    "seed": SEED,
}
_SEL_TYPE = Key(("none", "int", "list"), ABSENT)
FITTINGS = {
    "ener": {**_FIT_COMMON,
             "trainable": Key(("bool", "list"), True, "default"),
             "rcond": Key(("float", "none"), None),
             "atom_ener": Key(("list",), [], "default"),
             "layer_name": Key(("list",), ABSENT, "default"),
             "use_aparam_as_mask": Key(("bool",), False, "default")},
    "dipole": {**_FIT_COMMON, "sel_type": Key(_SEL_TYPE.types, ABSENT, alias=("dipole_type",))},
    "polar": {**_FIT_COMMON,
              "fit_diag": Key(("bool",), True),
              "scale": Key(("float", "list"), 1.0),
              "shift_diag": Key(("bool",), True),
              "sel_type": Key(_SEL_TYPE.types, ABSENT, alias=("pol_type",))},
}
DP_FITTINGS = ("dpa4_ener", "dos", "population", "property")

MODEL = {
    "type_map": Key(("list",), REQUIRED),
    "descriptor": Key(("dict",), REQUIRED),
    "fitting_net": Key(("dict",), REQUIRED),
    "type": Key(("str",), "standard", check=_one_of("standard", implemented=("standard",))),
    "data_stat_nbatch": Key(("int",), 10, check=_int_ge1),
    "data_stat_protect": Key(("float",), 0.01, "default"),
    "data_bias_nsample": Key(("int",), 10, "default"),
    "use_srtab": Key(("str",), ABSENT, "default"),
    "smin_alpha": Key(("float",), ABSENT, "default"),
    "sw_rmin": Key(("float",), ABSENT, "default"),
    "sw_rmax": Key(("float",), ABSENT, "default"),
    "pair_exclude_types": Key(("list",), [], check=_pairs),
    "atom_exclude_types": Key(("list",), [], check=_ints),
    "preset_out_bias": Key(("dict", "none"), None, "default"),
    "srtab_add_bias": Key(("bool",), True, "noop"),
    "type_embedding": Key(("dict",), ABSENT, "default"),
    "modifier": Key(("dict",), ABSENT, "default"),
    "compress": Key(("dict",), ABSENT, "default"),
    "spin": Key(("dict",), ABSENT, "default"),
    "finetune_head": Key(("str",), ABSENT, "default"),
    "model_branch_alias": Key(("list",), [], "noop"),
    "info": Key(("dict",), {}, "noop"),
    "bridging_method": Key(("str",), "None", "default"),
    "bridging_r_inner": Key(("float",), 0.5, "noop"),
    "bridging_r_outer": Key(("float",), 0.8, "noop"),
}

LR_COMMON = {
    "start_lr": Key(("float",), REQUIRED, check=_gt0),
    "stop_lr": Key(("float", "none"), None),
    "stop_lr_ratio": Key(("float", "none"), None, "default"),
    "warmup_steps": Key(("int",), 0, check=_int_ge0),
    "warmup_ratio": Key(("float", "none"), None, "default"),
    "warmup_start_factor": Key(("float",), 0.0, check=_ge0),
    "scale_by_worker": Key(("str",), "linear", "noop"),
}
#: learning_rate ``type`` -> its keys (deepmd-kit 3.x's variants; "wsd" not implemented)
LEARNING_RATES = {
    "exp": {**LR_COMMON,
            "decay_steps": Key(("int",), 5000, check=_int_ge1),
            "decay_rate": Key(("float", "none"), None),
            "smooth": Key(("bool",), False)},
    "cosine": dict(LR_COMMON),
}
LEARNING_RATE = LEARNING_RATES["exp"]
DP_LEARNING_RATES = ("wsd",)

LOSS_ENER = {
    "type": Key(("str",), "ener"),
    **{f"{w}_pref_{q}": _pref(d) for q, (ds, dl) in
       {"e": (0.02, 1.0), "f": (1000, 1.0), "v": (0.0, 0.0)}.items()
       for w, d in (("start", ds), ("limit", dl))},
    **{f"{w}_pref_{q}": _pref(0.0) for q in ("ae", "pf") for w in ("start", "limit")},
    **{f"{w}_pref_{q}": _pref(0.0, "default") for q in ("h", "gf")
       for w in ("start", "limit")},
    "use_default_pf": Key(("bool",), False),
    "relative_f": Key(("float", "none"), ABSENT),
    "enable_atom_ener_coeff": Key(("bool",), False, "default"),
    "numb_generalized_coord": Key(("int",), 0, "default"),
    "use_huber": Key(("bool",), False, "default"),
    "loss_func": Key(("str",), "mse", "default"),
    "f_use_norm": Key(("bool",), False, "default"),
    "huber_delta": Key(("float", "list"), 0.01, "noop"),
    "intensive_ener_virial": Key(("bool",), False, "default"),
}
LOSS_TENSOR = {
    "type": Key(("str",), "tensor"),
    "pref": Key(("float",), REQUIRED, check=_ge0),
    "pref_atomic": Key(("float",), REQUIRED, check=_ge0),
    "enable_atomic_weight": Key(("bool",), False, "default"),
}
DP_LOSSES = ("ener_hess", "dens", "ener_spin", "dos", "population", "property")

OPTIMIZER = {  # deepmd-kit's Adam, and symref's L-BFGS and time limit
    "type": Key(("str",), "Adam"),
    "adam_beta1": Key(("float",), 0.9, "default"),
    "adam_beta2": Key(("float",), 0.999, "default"),
    "weight_decay": Key(("float",), 0.0, "default"),
    "time_limit": Key(("float", "none"), None, check=lambda v: None if v is None else _gt0(v)),
}
OPTIMIZER_LBFGS = {
    "type": Key(("str",), "lbfgs"),
    "maxiter": Key(("int", "none"), None, check=lambda v: None if v is None else _int_ge1(v)),
    "standardize": Key(("bool",), True),
    "maxcor": Key(("int",), 50, check=_int_ge1),
    "time_limit": OPTIMIZER["time_limit"],
}
OPTIMIZER_TYPES = {"Adam": "Adam", "adam": "Adam", "lbfgs": "lbfgs", "LBFGS": "lbfgs",
                   "L-BFGS": "lbfgs"}
DP_OPTIMIZERS = ("AdamW", "LKF", "AdaMuon", "HybridMuon")

_DATA = {
    "systems": Key(("list", "str"), REQUIRED, check=_systems),
    "rglob_patterns": Key(("list", "none"), None, "default"),
    "batch_size": Key(("str", "int", "list"), "auto", check=_batch),
    "auto_prob": Key(("str",), "prob_sys_size", "default", alias=("auto_prob_style",)),
    "sys_probs": Key(("none", "list"), None, "default", alias=("sys_weights",)),
}
TRAINING_DATA = {**_DATA, "min_pair_dist": Key(("float",), 0.0, "default")}
VALIDATION_DATA = {**_DATA, "numb_btch": Key(("int",), 1, check=_int_ge1, alias=("numb_batch",))}

TRAINING = {
    "training_data": Key(("dict",), REQUIRED),
    "validation_data": Key(("none", "dict"), None),
    "stat_file": Key(("str",), ABSENT, "noop"),
    "stat_file_mode": Key(("str",), "update", "noop"),
    "mixed_precision": Key(("dict",), ABSENT, "default"),
    "numb_steps": Key(("int",), REQUIRED, check=_int_ge1,
                      alias=("stop_batch", "num_step", "num_steps", "numb_step")),
    "numb_epoch": Key(("float",), ABSENT, "default",
                      alias=("num_epochs", "num_epoch", "numb_epochs")),
    "seed": Key(("none", "int"), ABSENT),
    "disp_file": Key(("str",), "lcurve.out"),
    "disp_freq": Key(("int",), 1000, check=_int_ge1),
    "save_freq": Key(("int",), 1000, check=_int_ge1),
    "save_dir": Key(("none", "str"), None, "default"),
    "save_ckpt": Key(("str",), "model.ckpt"),
    "max_ckpt_keep": Key(("int",), 5, "noop"),
    "ckpt_keep_ratio": Key(("float", "none"), None, "noop"),
    "enable_ema": Key(("bool",), False, "default"),
    "ema_decay": Key(("float",), 0.999, "noop"),
    "ema_ckpt_keep": Key(("none", "int"), None, "noop"),
    "change_bias_after_training": Key(("bool",), False, "default"),
    "disp_training": Key(("bool",), True, "noop"),
    "time_training": Key(("bool",), True, "noop"),
    "disp_avg": Key(("bool",), False, "default"),
    "profiling": Key(("bool",), False, "noop"),
    "profiling_file": Key(("str",), "timeline.json", "noop"),
    "enable_profiler": Key(("bool",), False, "noop"),
    "tensorboard": Key(("bool",), False, "noop"),
    "tensorboard_log_dir": Key(("str",), "log", "noop"),
    "tensorboard_freq": Key(("int",), 1, "noop"),
    "gradient_max_norm": Key(("float",), ABSENT, "default"),
    "acc_freq": Key(("int",), 1, "default"),
    "zero_stage": Key(("int",), 0, "noop"),
    "neighbor_graph_method": Key(("str",), "auto", "noop"),
    "enable_compile": Key(("bool",), False, "noop"),
    "enable_tf32": Key(("bool",), False, "noop"),
}

TOP = {
    "model": Key(("dict",), REQUIRED),
    "learning_rate": Key(("dict",), ABSENT),
    "optimizer": Key(("dict",), ABSENT),
    "loss": Key(("dict",), ABSENT),
    "training": Key(("dict",), REQUIRED),
    "validating": Key(("dict",), {}, "noop"),
    "nvnmd": Key(("dict",), ABSENT, "default"),
}


def _check_section(node: dict, table: dict, path: str, warnings: list) -> dict:
    """``node`` with aliases renamed, comments dropped, defaults filled; raises on
    an unknown key, a wrong type, a bad value or a non-default unimplemented key."""
    if not isinstance(node, dict):
        raise TypeError(f"{path}: must be a JSON object, got {type(node).__name__}")
    out = {}
    aliases = {a: k for k, spec in table.items() for a in spec.alias}
    for k, v in node.items():
        if k.startswith("_"):  # deepmd-kit's trim_pattern "_*": comments
            continue
        name = aliases.get(k, k)
        where = f"{path}.{k}" if path else k
        if name not in table:
            close = difflib.get_close_matches(k, list(table) + list(aliases), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown key{hint} (keys of "
                             f"{path or 'the top level'}: {', '.join(sorted(table))})")
        if name in out:
            raise ValueError(f"{where}: given twice (as {name!r} and its alias)")
        spec = table[name]
        if not any(_is(v, t) for t in spec.types):
            raise TypeError(f"{where}: expected {' or '.join(spec.types)}, got "
                            f"{type(v).__name__} {v!r}")
        if spec.check is not None and v is not None:
            msg = spec.check(v)
            if msg:
                raise ValueError(f"{where} = {v!r}: {msg}")
        if spec.status != "ok" and v != spec.default and not (spec.default is ABSENT and v is None):
            default = "absent" if spec.default is ABSENT else repr(spec.default)
            if spec.status == "default":
                raise ValueError(f"{where} = {v!r}: known to deepmd-kit but not implemented in "
                                 f"symref (only the default, {default}, is)")
            warnings.append(f"{where} = {v!r} has no effect in symref (default {default})")
        out[name] = v
    for name, spec in table.items():
        if name in out:
            continue
        if spec.default is REQUIRED:
            where = f"{path}.{name}" if path else name
            raise ValueError(f"{where}: required key missing")
        if spec.default is not ABSENT:
            out[name] = copy.deepcopy(spec.default)
    return out


def _variant(node, path, types: dict, aliases: dict, known: tuple, default, warnings):
    """A section chosen by its ``type`` (descriptor, fitting_net, loss, optimizer)."""
    if not isinstance(node, dict):
        raise TypeError(f"{path}: must be a JSON object, got {type(node).__name__}")
    t = node.get("type", default)
    if t is None:
        raise ValueError(f"{path}.type: required key missing (one of {sorted(types)})")
    t = aliases.get(t, t)
    if t not in types:
        if t in known:
            raise ValueError(f"{path}.type = {t!r}: known to deepmd-kit but not implemented in "
                             f"symref (symref implements {sorted(types)})")
        close = difflib.get_close_matches(str(t), list(types) + list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{path}.type = {t!r}: unknown{hint} (symref implements "
                         f"{sorted(types)})")
    table = types[t]
    body = _check_section({k: v for k, v in node.items() if k != "type"},
                          {k: s for k, s in table.items() if k != "type"}, path, warnings)
    return {"type": t, **body}


def _descriptor(node, path: str, ntypes: int, warnings: list) -> dict:
    """A descriptor section checked by its type (:func:`_variant`), then the checks across
    its keys; a hybrid's ``list`` members each checked the same way under
    ``path.list[k]`` (a hybrid inside a hybrid is refused, as deepmd-kit does)."""
    d = _variant(node, path, DESCRIPTORS, DESCRIPTOR_ALIASES, DP_DESCRIPTORS, None, warnings)
    if d["type"] == "hybrid":
        if not d["list"]:
            raise ValueError(f"{path}.list: must hold at least one descriptor section")
        members = []
        for k, member in enumerate(d["list"]):
            where = f"{path}.list[{k}]"
            if isinstance(member, dict) and member.get("type") == "hybrid":
                raise ValueError(f"{where}.type = 'hybrid': a hybrid cannot hold a hybrid")
            members.append(_descriptor(member, where, ntypes, warnings))
        return {**d, "list": members}
    if not d["rcut_smth"] < d["rcut"]:
        raise ValueError(f"{path}.rcut_smth = {d['rcut_smth']}: must be smaller than "
                         f"rcut = {d['rcut']}")
    if isinstance(d.get("sel"), list) and len(d["sel"]) != ntypes:
        raise ValueError(f"{path}.sel = {d['sel']}: needs one entry per type of "
                         f"type_map ({ntypes})")
    if "axis_neuron" in d and d["axis_neuron"] > d["neuron"][-1]:
        raise ValueError(f"{path}.axis_neuron = {d['axis_neuron']}: must be <= "
                         f"neuron[-1] = {d['neuron'][-1]}")
    return d


def normalize(cfg: dict) -> tuple[dict, list]:
    """``(full config, warnings)``: deepmd-kit's defaults filled in, every key checked.

    Raises ValueError/TypeError naming the key path.  The result has every key
    deepmd-kit's ``normalize`` gives for the sections symref reads (model,
    learning_rate, loss, training) with the same values; ``sel`` may still be
    ``"auto"`` (resolved from the data by :func:`symref.io.neighbor_stat.resolve_sel`).
    """
    if not isinstance(cfg, dict):
        raise TypeError(f"the top level must be a JSON object, got {type(cfg).__name__}")
    warnings: list = []
    out = _check_section(cfg, TOP, "", warnings)
    m = _check_section(out["model"], MODEL, "model", warnings)
    m["type_map"] = _type_map(m["type_map"])
    m["descriptor"] = _descriptor(m["descriptor"], "model.descriptor", len(m["type_map"]),
                                  warnings)
    m["fitting_net"] = _variant(m["fitting_net"], "model.fitting_net", FITTINGS, {},
                                DP_FITTINGS, "ener", warnings)
    out["model"] = m
    ftype = m["fitting_net"]["type"]
    want = "tensor" if ftype in ("dipole", "polar") else "ener"
    loss = out.get("loss", {})
    out["loss"] = _variant(loss, "loss", {"ener": LOSS_ENER, "tensor": LOSS_TENSOR}, {},
                           DP_LOSSES, want, warnings)
    if out["loss"]["type"] != want:
        raise ValueError(f"loss.type = {out['loss']['type']!r} does not fit a {ftype!r} fitting "
                         f"(use {want!r})")
    opt = _variant(out.get("optimizer", {}), "optimizer",
                   {"Adam": OPTIMIZER, "lbfgs": OPTIMIZER_LBFGS}, OPTIMIZER_TYPES,
                   DP_OPTIMIZERS, "Adam", warnings)
    if "optimizer" in out or opt["type"] != "Adam":
        out["optimizer"] = opt
    if "learning_rate" in out or opt["type"] == "Adam":
        lr = _variant(out.get("learning_rate", {}), "learning_rate", LEARNING_RATES, {},
                      DP_LEARNING_RATES, "exp", warnings)
        if lr["stop_lr"] is None:  # deepmd-kit's backward-compatible default
            lr["stop_lr"] = 5e-8
        out["learning_rate"] = lr
    tr = _check_section(out["training"], TRAINING, "training", warnings)
    tr["training_data"] = _check_section(tr["training_data"], TRAINING_DATA,
                                         "training.training_data", warnings)
    if tr["validation_data"] is not None:
        tr["validation_data"] = _check_section(tr["validation_data"], VALIDATION_DATA,
                                               "training.validation_data", warnings)
    out["training"] = tr
    return out, warnings


def _type_map(tm):
    if not tm or any(not isinstance(t, str) or not t for t in tm):
        raise ValueError(f"model.type_map = {tm!r}: must be a non-empty list of element names")
    dup = sorted({t for t in tm if tm.count(t) > 1})
    if dup:
        raise ValueError(f"model.type_map = {tm!r}: {dup} listed twice")
    return list(tm)
