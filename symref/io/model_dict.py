r"""deepmd-kit 3.x's serialized model dict <-> symref models (no files here).

deepmd-kit 3.x describes a trained model by a nested dict, ``model.serialize()``;
every backend can rebuild the model from it (``BaseModel.deserialize``).  For
the model symref implements -- a ``standard`` model with an ``se_e2_a``
descriptor and an ``ener`` fitting -- the dict looks like (an ``se_r`` descriptor:
no ``axis_neuron``, ``type_one_side`` true, davg/dstd (ntypes, nnei, 1); ``se_e3``: no
``axis_neuron``/``type_one_side``/``spin``, ntypes² nets (ndim 2); ``hybrid``:
``{"type": "hybrid", "@version": 1, "list": [descriptor dicts]}``)::

    {"@class": "Model", "type": "standard", "@version": 2,
     "type_map": [...], "atom_exclude_types": [...], "pair_exclude_types": [[ti, tj], ...],
     "rcond": None, "preset_out_bias": None,
     "@variables": {"out_bias": (1, ntypes, 1), "out_std": (1, ntypes, 1)},
     "descriptor": {"@class": "Descriptor", "type": "se_e2_a", "@version": 2,
                    "rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt",
                    "type_one_side", "exclude_types", "env_protection", ...,
                    "env_mat": {"rcut", "rcut_smth", "protection", "use_exp_switch"},
                    "embeddings": NetworkCollection(ndim = 1 if type_one_side else 2),
                    "@variables": {"davg": (ntypes, nnei, 4), "dstd": (ntypes, nnei, 4)}},
     "fitting": {"@class": "Fitting", "type": "ener", "@version": 4, "var_name": "energy",
                 "neuron", "resnet_dt", "numb_fparam": 0, "numb_aparam": 0, ...,
                 "nets": NetworkCollection(ndim=1, one FittingNetwork per centre type),
                 "@variables": {"bias_atom_e": (ntypes, 1), "case_embd": None, ...}}}

A ``NetworkCollection`` stores its nets in a flat list, index
``sum_k key[k] * ntypes**k``: for ``se_e2_a`` embeddings without
``type_one_side`` the key is (centre ``ti``, neighbour ``tj``), index
``ti + tj * ntypes`` -- the same flat index as :attr:`symref.reference.descriptor.se_e2_a.SeE2A.embeddings`.
Each net is a list of ``Layer`` dicts (``w``: nin x nout, ``b``, ``idt``,
``activation_function``, ``resnet``); hidden layers carry any activation of
:data:`symref.reference.activation.ACTIVATIONS` (tanh, gelu, relu, softplus...; the name
is kept as written, lower-cased, so files round-trip); the last fitting layer has
``activation_function`` ``"none"`` (symref: ``"linear"``) and ``resnet`` false.

Public API: :func:`model_to_dict`, :func:`model_from_dict` (one reader per
section: header, descriptor, fitting, model-level statistics) and
:func:`model_def_script`.  The files that hold these dicts are
:mod:`symref.io.model_file`'s.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from symref.model.deeppot import DeepPot
from symref.io.descriptor_script import descriptor_script
from symref.model.tensor import DeepTensor
from symref.reference.activation import ACTIVATIONS, canonical_activation
from symref.reference.descriptor.dispatch import DESCRIPTOR_TYPES, canonical_type
from symref.reference.descriptor.hybrid import Hybrid
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.descriptor.se_e2_r import SeE2R
from symref.reference.descriptor.se_e3 import SeE3
from symref.reference.fitting import EnergyFitting, TensorFitting
from symref.reference.nn import Layer
from symref.reference.tabulation import EmbeddingTables

__all__ = ["model_to_dict", "model_from_dict", "model_def_script"]

# Serialization versions symref reads, (min, max) inclusive -- the same ranges
# deepmd-kit 3.2 accepts for these classes.  symref writes the max.
_VERSIONS = {
    "Model": (2, 2),
    "Descriptor": (1, 3),  # 3 only adds the optional "compress" tables
    "Fitting": (1, 4),
    "PolarFitting": (1, 5),
    "NetworkCollection": (1, 1),
    "EmbeddingNetwork": (1, 2),
    "FittingNetwork": (1, 1),
    "Layer": (1, 2),
}
_WRITE_VERSIONS = {"Model": 2, "Descriptor": 2, "Fitting": 4, "NetworkCollection": 1,
                   "EmbeddingNetwork": 2, "FittingNetwork": 1, "Layer": 2}

_PRECISION_NAMES = {
    "float64": "float64", "double": "float64", "default": "float64",
    "float32": "float32", "single": "float32",
}
# ---------------------------------------------------------------- helpers
def _native(x):
    """Python-native copy of a JSON/YAML-able value (numpy scalars, tuples -> lists)."""
    if isinstance(x, dict):
        return {str(k): _native(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_native(v) for v in x]
    if isinstance(x, np.ndarray):
        return x  # arrays are variables, handled by the file writers
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x)
    return x


def _check_version(d: dict, cls: str, where: str) -> int:
    ver = d.get("@version", 1)
    lo, hi = _VERSIONS[cls]
    if not isinstance(ver, (int, np.integer)) or isinstance(ver, bool) or not lo <= ver <= hi:
        raise ValueError(
            f"{where}: unsupported {cls} @version {ver!r} (symref reads versions {lo}..{hi})"
        )
    return int(ver)


def _check_class(d: Any, cls: str, where: str) -> None:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a {cls} dict, got {type(d).__name__}")
    got = d.get("@class", cls)
    if got != cls:
        raise ValueError(f"{where}: expected @class {cls!r}, got {got!r}")
    _check_version(d, cls, where)


def _require(d: dict, key: str, where: str):
    if key not in d:
        raise ValueError(f"{where}: missing key {key!r}")
    return d[key]


def _unsupported(where: str, feature: str) -> ValueError:
    return ValueError(f"{where}: {feature} is not supported by symref")


def _precision_name(p: str, where: str) -> str:
    name = _PRECISION_NAMES.get(str(p).lower())
    if name is None:
        raise _unsupported(where, f"precision {p!r} (symref supports float64 and float32)")
    return name


def _as_array(x, where: str, name: str, shape=None) -> np.ndarray:
    if x is None:
        raise ValueError(f"{where}: variable {name!r} is missing (None)")
    a = np.asarray(x)
    if shape is not None and a.shape != tuple(shape):
        raise ValueError(f"{where}: variable {name!r} has shape {a.shape}, expected {tuple(shape)}")
    return a


# ---------------------------------------------------------------- layers and nets
def _activation_from_dict(d: dict, where: str, default: str = "tanh") -> str:
    """``d["activation_function"]`` as a name of :data:`ACTIVATIONS` (lower-cased, None is
    ``"none"``, as deepmd-kit reads it); an unsupported one is refused naming ``where``."""
    act = d.get("activation_function", default)
    try:
        return canonical_activation(act, where)
    except ValueError:
        act = "none" if act is None else str(act).lower()
        raise _unsupported(where, f"activation_function {act!r} (symref implements "
                                  f"{', '.join(sorted(ACTIVATIONS))}, silut:T)") from None


def _layer_to_dict(layer: Layer, precision: str, trainable: bool) -> dict:
    return {
        "@class": "Layer",
        "@version": _WRITE_VERSIONS["Layer"],
        "bias": layer.b is not None,
        "use_timestep": layer.idt is not None,
        "activation_function": "none" if layer.activation == "linear" else layer.activation,
        "resnet": bool(layer.resnet),
        "precision": _precision_name(precision, "layer"),
        "trainable": bool(trainable),
        "@variables": {"w": layer.w, "b": layer.b, "idt": layer.idt},
    }


def _layer_from_dict(d: dict, where: str, *, output: bool) -> Layer:
    _check_class(d, "Layer", where)
    act = _activation_from_dict(d, where, default="none")
    if output:
        if act not in ("none", "linear"):
            raise _unsupported(where, f"output-layer activation {act!r} (expected none/linear)")
        act = "linear"
    var = _require(d, "@variables", where)
    w = _as_array(var.get("w"), where, "w")
    if w.ndim != 2:
        raise ValueError(f"{where}: layer weight must be 2-D, got shape {w.shape}")
    b = var.get("b")
    idt = var.get("idt")
    # deepmd-kit ravels b and idt on deserialize; so do we (keeps dtype and values)
    b = None if b is None else np.asarray(b).reshape(-1)
    idt = None if idt is None else np.asarray(idt).reshape(-1)
    try:
        return Layer(w, b, idt, act, bool(d.get("resnet", False)))
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from e


def _embedding_net_to_dict(layers: list[Layer], desc: SeE2A) -> dict:
    prec = _precision_name(desc.precision, "descriptor")
    return {
        "@class": "EmbeddingNetwork",
        "@version": _WRITE_VERSIONS["EmbeddingNetwork"],
        "in_dim": 1,
        "neuron": [int(n) for n in desc.neuron],
        "activation_function": desc.activation_function,
        "resnet_dt": bool(desc.resnet_dt),
        "bias": all(ly.b is not None for ly in layers),
        "precision": prec,
        "layers": [_layer_to_dict(ly, prec, bool(desc.trainable)) for ly in layers],
    }


def _embedding_net_from_dict(d: dict, where: str, neuron: list[int]) -> list[Layer]:
    _check_class(d, "EmbeddingNetwork", where)
    _activation_from_dict(d, where)
    if int(d.get("in_dim", 1)) != 1:
        raise _unsupported(where, f"embedding in_dim {d.get('in_dim')} (se_e2_a has in_dim 1)")
    layers = [_layer_from_dict(ld, f"{where}.layers[{i}]", output=False)
              for i, ld in enumerate(_require(d, "layers", where))]
    widths = [ly.nout for ly in layers]
    if widths != list(neuron):
        raise ValueError(f"{where}: layer widths {widths} do not match neuron {list(neuron)}")
    return layers


def _fitting_net_to_dict(layers: list[Layer], fit: EnergyFitting, in_dim: int,
                         trainable: list[bool]) -> dict:
    lprec = _precision_name(fit.precision, "fitting")
    return {
        "@class": "FittingNetwork",
        "@version": _WRITE_VERSIONS["FittingNetwork"],
        "in_dim": int(in_dim),
        "out_dim": int(layers[-1].nout),
        "neuron": [int(n) for n in fit.neuron],
        "activation_function": fit.activation_function,
        "resnet_dt": bool(fit.resnet_dt),
        "precision": fit.precision,
        "bias_out": layers[-1].b is not None,
        "layers": [_layer_to_dict(ly, lprec, trainable[i]) for i, ly in enumerate(layers)],
    }


def _fitting_net_from_dict(d: dict, where: str, neuron: list[int], in_dim: int,
                           out_dim: int = 1) -> list[Layer]:
    _check_class(d, "FittingNetwork", where)
    _activation_from_dict(d, where)
    if int(d.get("out_dim", 1)) != out_dim:
        raise ValueError(f"{where}: fitting out_dim {d.get('out_dim')}, expected {out_dim}")
    lds = _require(d, "layers", where)
    if len(lds) != len(neuron) + 1:
        raise ValueError(f"{where}: {len(lds)} layers, expected {len(neuron) + 1} "
                         f"(neuron {list(neuron)} + output)")
    layers = [_layer_from_dict(ld, f"{where}.layers[{i}]", output=(i == len(lds) - 1))
              for i, ld in enumerate(lds)]
    if layers[0].nin != in_dim:
        raise ValueError(f"{where}: input width {layers[0].nin} != descriptor dim {in_dim}")
    widths = [ly.nout for ly in layers]
    if widths != list(neuron) + [out_dim]:
        raise ValueError(f"{where}: layer widths {widths} do not match neuron {list(neuron)} "
                         f"+ [{out_dim}]")
    return layers


def _collection_to_dict(nets: list[dict], ndim: int, ntypes: int, network_type: str) -> dict:
    return {
        "@class": "NetworkCollection",
        "@version": _WRITE_VERSIONS["NetworkCollection"],
        "ndim": ndim,
        "ntypes": ntypes,
        "network_type": network_type,
        "networks": nets,
    }


def _collection_from_dict(d: dict, where: str, ndim: int, ntypes: int,
                          network_type: str) -> list[dict]:
    _check_class(d, "NetworkCollection", where)
    if int(d.get("ndim", -1)) != ndim:
        raise ValueError(f"{where}: ndim {d.get('ndim')} != expected {ndim}")
    if int(d.get("ntypes", -1)) != ntypes:
        raise ValueError(f"{where}: ntypes {d.get('ntypes')} != expected {ntypes}")
    if d.get("network_type", network_type) != network_type:
        raise ValueError(f"{where}: network_type {d.get('network_type')!r} != {network_type!r}")
    nets = _require(d, "networks", where)
    if len(nets) != ntypes ** ndim:
        raise ValueError(f"{where}: {len(nets)} networks, expected {ntypes ** ndim}")
    for i, n in enumerate(nets):
        if n is None:
            raise ValueError(f"{where}: network {i} is missing (None)")
    return nets


# ---------------------------------------------------------------- model <-> dict
def model_to_dict(model: DeepPot) -> dict:
    """deepmd-kit 3.x's ``model.serialize()`` dict for a se_e2_a + ener ``DeepPot``.

    Arrays are the model's own arrays (not copied); the dict is accepted by
    deepmd-kit's ``BaseModel.deserialize`` (any backend).  Keys symref does not
    model are written with deepmd-kit's defaults (``rcond``/``preset_out_bias``
    None at model level, no fparam/aparam/case embedding, ``spin`` None, ...).
    """
    desc, fit = model.descriptor, model.fitting
    ntypes = len(model.type_map)
    type_map = [str(t) for t in model.type_map]
    if desc.ntypes != ntypes or fit.ntypes != ntypes:
        raise ValueError(f"model_to_dict: type_map has {ntypes} types but descriptor has "
                         f"{desc.ntypes} and fitting {fit.ntypes}")
    descriptor = _descriptor_to_dict(desc, type_map)
    fitting = _fitting_to_dict(fit, type_map, desc.dim_out)
    out_bias = np.asarray(model.out_bias)
    out_std = np.asarray(model.out_std)
    return {
        "type_map": list(type_map),
        "atom_exclude_types": [int(t) for t in model.atom_exclude_types],
        "pair_exclude_types": [[int(a), int(b)] for a, b in model.pair_exclude_types],
        "rcond": None,
        "preset_out_bias": None,
        "@variables": {
            "out_bias": out_bias.reshape(1, ntypes, -1),
            "out_std": out_std.reshape(1, ntypes, -1),
        },
        "@class": "Model",
        "type": "standard",
        "@version": _WRITE_VERSIONS["Model"],
        "descriptor": descriptor,
        "fitting": fitting,
    }


def _descriptor_to_dict(desc, type_map: list[str]) -> dict:
    """The ``descriptor`` section: se_e2_a (or se_r) settings, embedding nets, davg/dstd;
    a hybrid: ``{"type": "hybrid", "@version": 1, "list": [member sections]}``."""
    if isinstance(desc, Hybrid):
        return {"@class": "Descriptor", "type": "hybrid", "@version": 1,
                "list": [_descriptor_to_dict(m, type_map) for m in desc.members]}
    ntypes = len(type_map)
    dprec = _precision_name(desc.precision, "descriptor")
    one_side = getattr(desc, "type_one_side", False)  # se_e3: ntypes² nets, none
    nemb = ntypes if one_side else ntypes * ntypes
    if len(desc.embeddings) != nemb:
        raise ValueError(f"model_to_dict: {len(desc.embeddings)} embedding nets, expected {nemb}")
    out = {
        "@class": "Descriptor",
        "type": {SeE2R: "se_r", SeE3: "se_e3"}.get(type(desc), "se_e2_a"),
        "@version": _WRITE_VERSIONS["Descriptor"] if getattr(desc, "tables", None) is None else 3,
        "rcut": float(desc.rcut),
        "rcut_smth": float(desc.rcut_smth),
        "sel": [int(s) for s in desc.sel],
        "neuron": [int(n) for n in desc.neuron],
        "axis_neuron": int(getattr(desc, "axis_neuron", 0)),  # deleted below for se_r
        "resnet_dt": bool(desc.resnet_dt),
        "trainable": bool(desc.trainable),
        "type_one_side": bool(one_side),
        "exclude_types": [[int(a), int(b)] for a, b in desc.exclude_types],
        "env_protection": float(desc.env_protection),
        "set_davg_zero": bool(desc.set_davg_zero),
        "activation_function": desc.activation_function,
        "precision": dprec,
        "spin": None,
        "env_mat": {
            "rcut": float(desc.rcut),
            "rcut_smth": float(desc.rcut_smth),
            "protection": float(desc.env_protection),
            "use_exp_switch": False,
        },
        "embeddings": _collection_to_dict(
            [_embedding_net_to_dict(net, desc) for net in desc.embeddings],
            1 if one_side else 2, ntypes, "embedding_network"),
        "@variables": {"davg": np.asarray(desc.davg), "dstd": np.asarray(desc.dstd)},
        "type_map": list(type_map),
    }
    if isinstance(desc, SeE3):  # deepmd-kit's se_t has none of these keys
        del out["axis_neuron"], out["type_one_side"], out["spin"]
    elif isinstance(desc, SeE2R):
        del out["axis_neuron"]
    if desc.tables is not None:  # deepmd-kit's @version 3 "compress" section
        out["compress"] = {"@variables": {"compress_data": list(desc.tables.data),
                                          "compress_info": list(desc.tables.info)}}
    return out


def _fitting_to_dict(fit, type_map: list[str], dim_descrpt: int) -> dict:
    """The ``fitting`` section: an ener, dipole or polar head, its nets and biases."""
    ntypes = len(type_map)
    trainable = fit.trainable
    if isinstance(trainable, (bool, np.bool_)):
        trainable = [bool(trainable)] * (len(fit.neuron) + 1)
    trainable = [bool(t) for t in trainable]
    tensor = isinstance(fit, TensorFitting)
    bias_atom_e = np.asarray(fit.bias_atom if tensor else fit.bias_atom_e)
    fitting = {
        "@class": "Fitting",
        "@version": 5 if tensor and fit.kind == "polar" else _WRITE_VERSIONS["Fitting"],
        "var_name": fit.kind if tensor else "energy",
        "ntypes": ntypes,
        "dim_descrpt": int(dim_descrpt),
        "neuron": [int(n) for n in fit.neuron],
        "resnet_dt": bool(fit.resnet_dt),
        "numb_fparam": 0,
        "numb_aparam": 0,
        "dim_case_embd": 0,
        "default_fparam": None,
        "rcond": None if fit.rcond is None else float(fit.rcond),
        "activation_function": fit.activation_function,
        "precision": fit.precision,
        "mixed_types": False,
        "exclude_types": [int(t) for t in fit.exclude_types],
        "nets": _collection_to_dict(
            [_fitting_net_to_dict(net, fit, dim_descrpt, trainable) for net in fit.nets],
            1, ntypes, "fitting_network"),
        "@variables": {
            "bias_atom_e": bias_atom_e.reshape(ntypes, -1),
            "case_embd": None,
            "fparam_avg": None,
            "fparam_inv_std": None,
            "aparam_avg": None,
            "aparam_inv_std": None,
        },
        "type_map": list(type_map),
        "tot_ener_zero": False,
        "trainable": trainable,
        "layer_name": None,
        "use_aparam_as_mask": False,
        "spin": None,
        "type": "ener",
        "dim_out": 1,
        "atom_ener": None if tensor else _native(fit.atom_ener),
    }
    if tensor:  # deepmd-kit's dipole/polar fittings have no dim_out/atom_ener
        del fitting["dim_out"], fitting["atom_ener"]
        fitting.update(type=fit.kind, embedding_width=int(fit.embedding_width))
        if fit.kind == "dipole":
            fitting.update(r_differentiable=bool(fit.r_differentiable),
                           c_differentiable=bool(fit.c_differentiable))
        else:
            fitting.update(fit_diag=bool(fit.fit_diag), shift_diag=bool(fit.shift_diag))
            fitting["@variables"]["scale"] = np.asarray(fit.scale).reshape(ntypes, 1)
            fitting["@variables"]["constant_matrix"] = np.asarray(fit.constant_matrix).reshape(
                ntypes)
    return fitting


def _unwrap(d: Any) -> dict:
    """The model dict inside a file wrapper ``{"model": ..., "model_def_script": ...}``."""
    if not isinstance(d, dict):
        raise ValueError(f"expected a model dict, got {type(d).__name__}")
    if "@class" not in d and isinstance(d.get("model"), dict):
        return d["model"]
    if "@class" not in d and isinstance(d.get("model_dict"), dict):
        raise _unsupported("model", "a multi-task model (model_dict)")
    return d


def model_from_dict(d: dict) -> DeepPot:
    """Build a :class:`~symref.model.deeppot.DeepPot` from deepmd-kit's ``model.serialize()`` dict.

    Also accepts the file wrapper (``{"model": {...}, ...}``) that
    ``load_dp_model`` returns.  Raises ``ValueError`` naming the feature for
    anything symref does not implement: a non-standard model type, a
    descriptor other than ``se_e2_a``/``se_a``/``se_e2_r``/``se_r``, a fitting other than
    ``ener``/``dipole``/``polar`` (the tensor heads on se_e2_a only),
    frame/atomic parameters, case embedding, spin, non-tanh activations,
    the exponential switch, ``atom_ener``
    vacuum-contribution removal, shared layers, mixed-type fitting, and
    serialization versions outside the supported ranges.

    Training-only settings that do not change the model's outputs are not kept:
    model-level ``rcond``/``preset_out_bias``.  Arrays are used as given (no
    copy, dtype kept); ``bias_atom_e`` (ntypes, 1) and ``out_bias``/``out_std``
    (1, ntypes, 1) become (ntypes,) views.

    The sections are read in order, each by its own reader: the model header and
    type map, ``descriptor``, ``fitting``, then the model-level statistics and
    exclusions (:func:`_finish_model`).
    """
    d = _unwrap(d)
    where = "model"
    type_map = _model_header_from_dict(d, where)
    descriptor = _descriptor_from_dict(_require(d, "descriptor", where), type_map)
    fitting, odim = _fitting_from_dict(_require(d, "fitting", where), type_map, descriptor)
    return _finish_model(d, where, type_map, descriptor, fitting, odim)


def _model_header_from_dict(d: dict, where: str) -> list[str]:
    """Model class, type and version; returns the type map."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a dict, got {type(d).__name__}")
    cls = d.get("@class", "Model")
    if cls != "Model":
        raise ValueError(f"{where}: @class {cls!r} is not a deepmd-kit Model")
    mtype = d.get("type", "standard")
    if mtype != "standard":
        raise _unsupported(where, f"model type {mtype!r} (symref reads 'standard' models)")
    _check_version(d, "Model", where)
    type_map = [str(t) for t in _require(d, "type_map", where)]
    if len(type_map) == 0:
        raise ValueError(f"{where}: empty type_map")
    return type_map


def _check_descriptor_features(dd: Any, w: str) -> None:
    """Refuse descriptors symref does not implement (other types, spin,
    the exponential switch, non-tanh activations) and unsupported versions."""
    if not isinstance(dd, dict):
        raise ValueError(f"{w}: expected a dict")
    if dd.get("@class", "Descriptor") != "Descriptor":
        raise ValueError(f"{w}: @class {dd.get('@class')!r} is not a Descriptor")
    dtype_ = dd.get("type")
    what = "a compressed (tabulated) " if dd.get("compress") is not None else ""
    if dtype_ not in DESCRIPTOR_TYPES:
        raise _unsupported(w, f"{what}descriptor type {dtype_!r} (symref implements "
                              f"{', '.join(sorted(DESCRIPTOR_TYPES))})")
    _check_version(dd, "Descriptor", w)
    if dd.get("spin") is not None:
        raise _unsupported(w, "spin")
    env_mat = dd.get("env_mat") or {}
    if env_mat.get("use_exp_switch", False):
        raise _unsupported(w, "use_exp_switch (exponential switch function)")
    _activation_from_dict(dd, w)


def _descriptor_from_dict(dd: Any, type_map: list[str], w: str = "model.descriptor"):
    """The ``descriptor`` section: an se_e2_a (se_a) or se_e2_r (se_r) descriptor, its nets
    and davg/dstd, or a hybrid of them (``list``, @version 1)."""
    ntypes = len(type_map)
    if isinstance(dd, dict) and dd.get("type") == "hybrid":
        if dd.get("@version", 1) != 1:
            raise ValueError(f"{w}: unsupported hybrid Descriptor @version {dd['@version']!r} "
                             "(symref reads version 1)")
        members = _require(dd, "list", w)
        if not isinstance(members, list) or not members:
            raise ValueError(f"{w}.list: expected a non-empty list of descriptors")
        if any(isinstance(m, dict) and m.get("type") == "hybrid" for m in members):
            raise _unsupported(w, "a hybrid inside a hybrid")
        try:
            return Hybrid([_descriptor_from_dict(m, type_map, f"{w}.list[{k}]")
                           for k, m in enumerate(members)])
        except ValueError as e:  # members disagreeing on precision or ntypes
            raise ValueError(e if str(e).startswith(w) else f"{w}: {e}") from None
    _check_descriptor_features(dd, w)
    env_mat = dd.get("env_mat") or {}
    sel = [int(s) for s in _require(dd, "sel", w)]
    if len(sel) != ntypes:
        raise ValueError(f"{w}: len(sel)={len(sel)} != ntypes={ntypes}")
    neuron = [int(n) for n in _require(dd, "neuron", w)]
    type_one_side = bool(dd.get("type_one_side", True))
    dprec = _precision_name(dd.get("precision", "float64"), w)
    nnei = sum(sel)
    radial = canonical_type(dd["type"]) == "se_e2_r"
    three_body = canonical_type(dd["type"]) == "se_e3"
    if radial and not type_one_side:
        raise _unsupported(w, "se_r with type_one_side false (deepmd-kit 3.x neither)")
    dvar = _require(dd, "@variables", w)
    davg = _as_array(dvar.get("davg"), w, "davg", (ntypes, nnei, 1 if radial else 4))
    dstd = _as_array(dvar.get("dstd"), w, "dstd", (ntypes, nnei, 1 if radial else 4))
    ndim = 1 if type_one_side and not three_body else 2
    emb_dicts = _collection_from_dict(_require(dd, "embeddings", w), f"{w}.embeddings",
                                      ndim, ntypes, "embedding_network")
    embeddings = [_embedding_net_from_dict(nd, f"{w}.embeddings.networks[{i}]", neuron)
                  for i, nd in enumerate(emb_dicts)]
    dtm = dd.get("type_map")
    if dtm is not None and list(dtm) != type_map:
        raise ValueError(f"{w}: type_map {list(dtm)} differs from the model's {type_map}")
    env_protection = float(dd.get("env_protection", 0.0))
    if "protection" in env_mat and float(env_mat["protection"]) != env_protection:
        raise ValueError(f"{w}: env_mat.protection {env_mat['protection']} != "
                         f"env_protection {env_protection}")
    rcut = float(_require(dd, "rcut", w))
    rcut_smth = float(_require(dd, "rcut_smth", w))
    if not 0.0 <= rcut_smth < rcut:
        raise ValueError(f"{w}: need 0 <= rcut_smth < rcut, got rcut_smth={rcut_smth}, "
                         f"rcut={rcut}")
    tables = _tables_from_dict(dd.get("compress"), f"{w}.compress", len(embeddings), neuron[-1])
    if radial:
        kind = dict(type_one_side=type_one_side, tables=tables)
    elif three_body:
        kind = dict(tables=tables)
    else:
        axis_neuron = int(_require(dd, "axis_neuron", w))
        if not 0 < axis_neuron <= neuron[-1]:
            raise ValueError(f"{w}: axis_neuron {axis_neuron} must be in 1..neuron[-1]="
                             f"{neuron[-1]}")
        kind = dict(axis_neuron=axis_neuron, type_one_side=type_one_side, tables=tables)
    return (SeE2R if radial else SeE3 if three_body else SeE2A)(
        rcut=rcut,
        rcut_smth=rcut_smth,
        sel=sel,
        neuron=neuron,
        embeddings=embeddings,
        davg=davg,
        dstd=dstd,
        resnet_dt=bool(dd.get("resnet_dt", False)),
        exclude_types=[(int(a), int(b)) for a, b in dd.get("exclude_types", [])],
        env_protection=env_protection,
        set_davg_zero=bool(dd.get("set_davg_zero", False)),
        activation_function=_activation_from_dict(dd, w),
        precision=dprec,
        trainable=bool(dd.get("trainable", True)),
        **kind,
    )


def _tables_from_dict(cd: Any, w: str, nemb: int, m1: int) -> EmbeddingTables | None:
    """The ``compress`` section (descriptor @version 3): one table per embedding net."""
    if cd is None:
        return None
    v = _require(cd, "@variables", w) if isinstance(cd, dict) else None
    if not isinstance(v, dict):
        raise ValueError(f"{w}: expected {{'@variables': {{'compress_data', 'compress_info'}}}}")
    data = [np.asarray(x) for x in _require(v, "compress_data", w)]
    info = [np.asarray(x).reshape(-1) for x in _require(v, "compress_info", w)]
    if len(data) != nemb:
        raise ValueError(f"{w}: {len(data)} tables for {nemb} embedding nets")
    for k, x in enumerate(data):
        if x.size and (x.ndim != 2 or x.shape[1] != 6 * m1):
            raise ValueError(f"{w}: compress_data[{k}] has shape {x.shape}, expected "
                             f"(nspline, {6 * m1})")
    try:
        return EmbeddingTables(data=data, info=info)
    except ValueError as e:
        raise ValueError(f"{w}: {e}") from None


def _check_fitting_features(fd: Any, w: str) -> str:
    """Refuse fittings symref does not implement (other types, frame/atomic parameters,
    case embedding, spin, mixed types, shared layers, ``atom_ener``, non-tanh
    activations) and unsupported versions; returns the fitting type."""
    if not isinstance(fd, dict):
        raise ValueError(f"{w}: expected a dict")
    if fd.get("@class", "Fitting") != "Fitting":
        raise ValueError(f"{w}: @class {fd.get('@class')!r} is not a Fitting")
    ftype = fd.get("type")
    if ftype not in ("ener", "dipole", "polar"):
        raise _unsupported(w, f"fitting type {ftype!r} (symref reads 'ener', 'dipole', 'polar')")
    _check_version(fd, "PolarFitting" if ftype == "polar" else "Fitting", w)
    var_name = {"ener": "energy", "dipole": "dipole", "polar": "polar"}[ftype]
    if fd.get("var_name", var_name) != var_name or (ftype == "ener"
                                                    and int(fd.get("dim_out", 1)) != 1):
        raise _unsupported(w, f"var_name {fd.get('var_name')!r} / dim_out {fd.get('dim_out')}")
    for key, feature in (("numb_fparam", "numb_fparam>0 (frame parameters)"),
                         ("numb_aparam", "numb_aparam>0 (atomic parameters)"),
                         ("dim_case_embd", "dim_case_embd>0 (case embedding)")):
        if int(fd.get(key, 0) or 0) > 0:
            raise _unsupported(w, f"{feature}: {key}={fd[key]}")
    if fd.get("spin") is not None:
        raise _unsupported(w, "spin")
    if fd.get("mixed_types", False):
        raise _unsupported(w, "mixed_types fitting (one net shared by all types)")
    if fd.get("tot_ener_zero", False):
        raise _unsupported(w, "tot_ener_zero")
    if fd.get("layer_name") is not None:
        raise _unsupported(w, "layer_name (shared fitting layers)")
    if fd.get("use_aparam_as_mask", False):
        raise _unsupported(w, "use_aparam_as_mask")
    atom_ener = fd.get("atom_ener")
    if atom_ener is not None and any(x is not None for x in atom_ener):
        raise _unsupported(w, "atom_ener (removal of the vacuum contribution)")
    _activation_from_dict(fd, w)
    return ftype


def _fitting_from_dict(fd: Any, type_map: list[str], descriptor):
    """The ``fitting`` section: an ener, dipole or polar head on ``descriptor``.

    Returns ``(fitting, odim)``: an :class:`EnergyFitting` (odim 1) or a
    :class:`TensorFitting` (odim 3 for a dipole, 9 for a polarizability).
    """
    w = "model.fitting"
    ntypes = len(type_map)
    ftype = _check_fitting_features(fd, w)
    if ftype != "ener" and not isinstance(descriptor, SeE2A):
        raise _unsupported(w, f"a {ftype} fitting on descriptor {type(descriptor).__name__} "
                              "(the tensor heads need se_e2_a's T)")
    if int(fd.get("ntypes", ntypes)) != ntypes:
        raise ValueError(f"{w}: ntypes {fd.get('ntypes')} != {ntypes}")
    dim_descrpt = int(fd.get("dim_descrpt", descriptor.dim_out))
    if dim_descrpt != descriptor.dim_out:
        raise ValueError(f"{w}: dim_descrpt {dim_descrpt} != descriptor output "
                         f"{descriptor.dim_out}")
    fneuron = [int(n) for n in _require(fd, "neuron", w)]
    fvar = _require(fd, "@variables", w)
    for key, feature in (("case_embd", "case embedding"), ("fparam_avg", "frame parameters"),
                         ("aparam_avg", "atomic parameters")):
        if fvar.get(key) is not None:
            raise _unsupported(w, f"{feature} ({key} is set)")
    M1 = getattr(descriptor, "neuron", [0])[-1]  # the embedding width (tensor heads: se_e2_a)
    fit_diag = bool(fd.get("fit_diag", True))
    nout = 1 if ftype == "ener" else (M1 if ftype == "dipole" or fit_diag else M1 * M1)
    if ftype != "ener" and int(fd.get("embedding_width", M1)) != M1:
        raise ValueError(f"{w}: embedding_width {fd.get('embedding_width')} != descriptor "
                         f"width {M1}")
    bias_atom_e = _as_array(fvar.get("bias_atom_e"), w, "bias_atom_e")
    if bias_atom_e.size != ntypes * nout:
        raise ValueError(f"{w}: bias_atom_e has shape {bias_atom_e.shape}, expected "
                         f"({ntypes}, {nout})")
    fprec = str(fd.get("precision", "float64"))
    _precision_name(fprec, w)
    net_dicts = _collection_from_dict(_require(fd, "nets", w), f"{w}.nets", 1, ntypes,
                                      "fitting_network")
    nets = [_fitting_net_from_dict(nd, f"{w}.nets.networks[{i}]", fneuron, descriptor.dim_out,
                                   nout) for i, nd in enumerate(net_dicts)]
    ftm = fd.get("type_map")
    if ftm is not None and list(ftm) != type_map:
        raise ValueError(f"{w}: type_map {list(ftm)} differs from the model's {type_map}")
    trainable = fd.get("trainable", True)
    if isinstance(trainable, list):
        trainable = [bool(t) for t in trainable]
    elif trainable is None:
        trainable = True
    common = dict(resnet_dt=bool(fd.get("resnet_dt", True)),
                  exclude_types=[int(t) for t in fd.get("exclude_types", [])],
                  activation_function=_activation_from_dict(fd, w), precision=fprec,
                  rcond=None if fd.get("rcond") is None else float(fd["rcond"]),
                  trainable=trainable)
    if ftype != "ener":
        scale = fvar.get("scale")
        cmat = fvar.get("constant_matrix")
        fitting = TensorFitting(
            kind=ftype, neuron=fneuron, nets=nets, bias_atom=bias_atom_e.reshape(ntypes, nout),
            embedding_width=M1, fit_diag=fit_diag, shift_diag=bool(fd.get("shift_diag", True)),
            scale=None if scale is None else _as_array(scale, w, "scale").reshape(ntypes),
            constant_matrix=None if cmat is None else
            _as_array(cmat, w, "constant_matrix").reshape(ntypes),
            r_differentiable=bool(fd.get("r_differentiable", True)),
            c_differentiable=bool(fd.get("c_differentiable", True)), **common)
        return fitting, 3 if ftype == "dipole" else 9
    atom_ener = fd.get("atom_ener")
    fitting = EnergyFitting(neuron=fneuron, nets=nets, bias_atom_e=bias_atom_e.reshape(ntypes),
                            atom_ener=None if atom_ener is None else list(atom_ener), **common)
    return fitting, 1


def _finish_model(d, where, type_map, descriptor, fitting, odim):
    """Model-level statistics and exclusions; a DeepPot (odim 1) or DeepTensor."""
    ntypes = len(type_map)
    mvar = d.get("@variables") or {}
    out_bias = mvar.get("out_bias")
    out_std = mvar.get("out_std")
    shape = (ntypes,) if odim == 1 else (ntypes, odim)
    out_bias = (np.zeros(shape) if out_bias is None
                else _as_array(out_bias, where, "out_bias", (1, ntypes, odim)).reshape(shape))
    out_std = (np.ones(shape) if out_std is None
               else _as_array(out_std, where, "out_std", (1, ntypes, odim)).reshape(shape))
    for key in ("atom_exclude_types",):
        for t in d.get(key, []):
            if not 0 <= int(t) < ntypes:
                raise ValueError(f"{where}: {key} entry {t} out of range")
    # deepmd-kit 3.x's DPAtomicModel re-initialises the fitting's exclusion with the
    # model-level atom_exclude_types (``fitting_net.reinit_exclude``): a fitting-level
    # ``exclude_types`` in the file has no effect, so it has none here either
    fitting.exclude_types = [int(t) for t in d.get("atom_exclude_types", [])]
    cls = DeepPot if odim == 1 else DeepTensor
    return cls(
        type_map=type_map,
        descriptor=descriptor,
        fitting=fitting,
        out_bias=out_bias,
        out_std=out_std,
        atom_exclude_types=[int(t) for t in d.get("atom_exclude_types", [])],
        pair_exclude_types=[(int(a), int(b)) for a, b in d.get("pair_exclude_types", [])],
    )


def model_def_script(model: DeepPot) -> dict:
    """A deepmd-kit input ``model`` section that builds a model of this shape.

    Stored as ``model_def_script`` in files (deepmd-kit's converters, e.g.
    ``dp convert-backend`` to ``.pth``, need it); the weights come from the
    serialized dict, not from this script.
    """
    desc, fit = model.descriptor, model.fitting
    trainable = fit.trainable
    if not isinstance(trainable, (bool, np.bool_)):
        trainable = [bool(t) for t in trainable]
    return _native({
        "type_map": list(model.type_map),
        "descriptor": descriptor_script(desc),
        "fitting_net": {
            "type": fit.kind if isinstance(fit, TensorFitting) else "ener",
            **({"fit_diag": fit.fit_diag, "shift_diag": fit.shift_diag,
                "scale": [float(x) for x in fit.scale]}
               if isinstance(fit, TensorFitting) and fit.kind == "polar" else {}),
            **({"exclude_types": list(fit.exclude_types)} if isinstance(fit, TensorFitting)
               else {}),
            "neuron": list(fit.neuron),
            "resnet_dt": fit.resnet_dt,
            "activation_function": fit.activation_function,
            "precision": fit.precision,
            "rcond": fit.rcond,
            "trainable": trainable,
        },
        "atom_exclude_types": list(model.atom_exclude_types),
        "pair_exclude_types": [list(p) for p in model.pair_exclude_types],
    })

