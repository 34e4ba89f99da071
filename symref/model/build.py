"""Building models: from a deepmd-kit-style config, with random statistics, demo models.

``build_model``           a new energy model (:class:`~symref.model.deeppot.DeepPot`: se_e2_a,
                          se_e2_r, se_e3 or hybrid) or dipole/polar
                          (:class:`~symref.model.tensor.DeepTensor`: se_e2_a) model
``randomize_statistics``  non-trivial davg/dstd and biases with deepmd-kit's structure
``demo_model``            a random model that behaves like a trained one (tests, demos)
"""
from __future__ import annotations

import warnings

import numpy as np

from symref.model.base import dtype_of
from symref.model.deeppot import DeepPot
from symref.model.tensor import DeepTensor
from symref.reference.activation import canonical_activation
from symref.reference.descriptor.dispatch import canonical_type
from symref.reference.descriptor.hybrid import Hybrid
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.descriptor.se_e2_r import SeE2R
from symref.reference.descriptor.se_e3 import SeE3
from symref.reference.fitting import EnergyFitting, TensorFitting
from symref.reference.nn import init_mlp


def build_model(config: dict, seed: int = 0) -> DeepPot | DeepTensor:
    """A new randomly initialised model from a deepmd-kit-style ``model`` config.

    ``config = {"type_map": [...], "descriptor": {"type": "se_e2_a", "rcut",
    "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt", "type_one_side",
    "exclude_types", "env_protection", "set_davg_zero", "precision"}, "fitting_net":
    {"neuron", "resnet_dt", "precision"}}``.  Statistics start neutral (``davg`` 0,
    ``dstd`` 1, biases 0).
    Descriptor ``type`` "se_e2_r" (or "se_r"): the same keys less ``axis_neuron``,
    ``type_one_side`` true only, energy fitting only; "se_e3" (``se_at``): the same keys
    less ``axis_neuron`` and ``type_one_side``; "hybrid": ``{"type": "hybrid",
    "list": [section, ...]}`` (energy fitting only; each member its own rcut, sel, ...).

    Random streams, scoped as deepmd-kit scopes them: a section with its own integer
    ``seed`` (``descriptor.seed``, a hybrid member's ``seed``, ``fitting_net.seed``)
    draws its networks from its own generator (``default_rng([k, seed])``, k = 0 for
    descriptors, 1 for the fitting), so that with both given the weights do not depend
    on ``seed`` (``training.seed``, which then orders the data only).  Sections without
    one continue a single generator seeded with ``seed`` (descriptor first, then the
    fitting; deepmd-kit would draw them at random).  Equal inputs give equal bits;
    torch's own random numbers are not reproduced.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    for key in ("type_map", "descriptor", "fitting_net"):
        if key not in config:
            raise ValueError(f"model config is missing {key!r}")
    type_map = list(config["type_map"])
    ntypes = len(type_map)
    dc = dict(config["descriptor"])
    fc = dict(config["fitting_net"])
    dtype_name = canonical_type(dc.get("type", "se_e2_a"))
    ftype = fc.get("type", "ener")
    if ftype not in ("ener", "dipole", "polar"):
        raise ValueError(f"fitting_net type {ftype!r} is not implemented "
                         "(ener, dipole, polar)")
    if ftype != "ener" and dtype_name != "se_e2_a":
        raise ValueError(f"fitting_net type {ftype!r} needs the equivariant T of an se_e2_a "
                         f"descriptor, got descriptor type {dc.get('type')!r}")
    rng = np.random.default_rng(seed)
    desc = _build_descriptor(dc, type_map, rng, "descriptor")
    precision = desc.precision
    fneuron = list(fc.get("neuron", [240, 240, 240]))
    fact = canonical_activation(fc.get("activation_function", "tanh"),
                                "fitting_net.activation_function")
    rng = section_rng(fc, 1, rng)
    if ftype != "ener":
        return _build_tensor_model(config, fc, ftype, type_map, desc, fneuron, rng, fact)
    nets = [init_mlp(rng, desc.dim_out, fneuron, resnet_dt=bool(fc.get("resnet_dt", True)),
                     out_dim=1, activation=fact) for _ in range(ntypes)]
    fit = EnergyFitting(neuron=fneuron, nets=nets, bias_atom_e=np.zeros(ntypes),
                        resnet_dt=bool(fc.get("resnet_dt", True)),
                        exclude_types=list(fc.get("exclude_types", [])),
                        precision=fc.get("precision", precision), activation_function=fact)
    return DeepPot(type_map=type_map, descriptor=desc, fitting=fit,
                   out_bias=np.zeros(ntypes), out_std=np.ones(ntypes),
                   atom_exclude_types=list(config.get("atom_exclude_types", [])),
                   pair_exclude_types=[tuple(p) for p in config.get("pair_exclude_types", [])])


def section_rng(section: dict, stream: int, rng):
    """The generator of a config ``section``'s networks: its own,
    ``default_rng([stream, seed])``, when it has an integer ``seed``; else ``rng`` (the
    shared generator of :func:`build_model`'s ``seed``)."""
    s = section.get("seed")
    if s is None:
        return rng
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
        raise ValueError(f"seed must be a non-negative integer, got {s!r}")
    return np.random.default_rng([stream, int(s)])


def _build_descriptor(dc: dict, type_map: list, rng, where: str):
    """A new descriptor from its config section ``dc`` (``where`` names it in errors):
    se_e2_a, se_e2_r, or a hybrid whose ``list`` holds such sections."""
    ntypes = len(type_map)
    rng = section_rng(dc, 0, rng)
    dtype_name = canonical_type(dc.get("type", "se_e2_a"), f"{where}.type")
    if dtype_name == "hybrid":
        members = dc.get("list")
        if not isinstance(members, list) or not members:
            raise ValueError(f"{where}.list must be a non-empty list of descriptor sections, "
                             f"got {members!r}")
        for k, m in enumerate(members):
            if not isinstance(m, dict):
                raise ValueError(f"{where}.list[{k}] must be a dict, got {type(m).__name__}")
            if m.get("type_map") is not None and list(m["type_map"]) != list(type_map):
                raise ValueError(f"{where}.list[{k}].type_map {list(m['type_map'])} differs from "
                                 f"the model's {list(type_map)}")
        return Hybrid([_build_descriptor(dict(m), type_map, rng, f"{where}.list[{k}]")
                       for k, m in enumerate(members)])
    sel = dc.get("sel")
    if not isinstance(sel, (list, tuple)) or len(sel) != ntypes or \
            any(not isinstance(s, (int, np.integer)) or s < 0 for s in sel):
        raise ValueError(f"{where}.sel must be a list of {ntypes} non-negative ints "
                         f"(one per type in type_map), got {sel!r}")
    rcut, rcut_smth = float(dc["rcut"]), float(dc.get("rcut_smth", 0.5))
    if not 0 <= rcut_smth < rcut:
        raise ValueError(f"{where}: need 0 <= rcut_smth < rcut, got rcut_smth={rcut_smth}, "
                         f"rcut={rcut}")
    neuron = list(dc.get("neuron", [24, 48, 96]))
    one_side = bool(dc.get("type_one_side", True))
    resnet_dt = bool(dc.get("resnet_dt", False))
    precision = dc.get("precision", "float64")
    dtype_of(precision)
    dact = canonical_activation(dc.get("activation_function", "tanh"),
                                f"{where}.activation_function")
    if dtype_name == "se_e2_r" and not one_side:  # dp train's input default for se_r
        warnings.warn(f"{where}.type_one_side = false: se_e2_r is built with one embedding net "
                      "per neighbour type (type_one_side = true), as deepmd-kit 3.x's PyTorch "
                      "backend builds it (its NumPy backend refuses false)", UserWarning,
                      stacklevel=3)
        one_side = True
    nnets = ntypes if one_side and dtype_name != "se_e3" else ntypes * ntypes
    embeddings = [init_mlp(rng, 1, neuron, resnet_dt=resnet_dt, activation=dact)
                  for _ in range(nnets)]
    nnei = int(sum(sel))
    common = dict(rcut=rcut, rcut_smth=rcut_smth, sel=[int(s) for s in sel], neuron=neuron,
                  embeddings=embeddings, resnet_dt=resnet_dt,
                  exclude_types=[tuple(p) for p in dc.get("exclude_types", [])],
                  env_protection=float(dc.get("env_protection", 0.0)),
                  set_davg_zero=bool(dc.get("set_davg_zero", False)), precision=precision,
                  activation_function=dact)
    if dtype_name == "se_e3":  # one net per pair of neighbour types, no type_one_side
        return SeE3(davg=np.zeros((ntypes, nnei, 4)), dstd=np.ones((ntypes, nnei, 4)), **common)
    common["type_one_side"] = one_side
    if dtype_name == "se_e2_r":
        return SeE2R(davg=np.zeros((ntypes, nnei, 1)), dstd=np.ones((ntypes, nnei, 1)), **common)
    axis = int(dc.get("axis_neuron", 8))
    if not 0 < axis <= neuron[-1]:
        raise ValueError(f"{where}.axis_neuron must be in 1..neuron[-1]={neuron[-1]}, got {axis}")
    return SeE2A(axis_neuron=axis, davg=np.zeros((ntypes, nnei, 4)),
                 dstd=np.ones((ntypes, nnei, 4)), **common)


def _build_tensor_model(config, fc, ftype, type_map, desc, fneuron, rng, fact) -> DeepTensor:
    """The dipole/polar part of :func:`build_model`: ``sel_type`` (types that carry
    the output; deepmd-kit 2.x's key) or ``exclude_types`` (its complement),
    ``fit_diag``, ``scale`` (number or one per type), ``shift_diag``."""
    ntypes = len(type_map)
    if "sel_type" in fc and fc.get("exclude_types"):
        raise ValueError("fitting_net: give sel_type or exclude_types, not both")
    if "sel_type" in fc:
        sel_type = [int(t) for t in fc["sel_type"]]
        if any(not 0 <= t < ntypes for t in sel_type):
            raise ValueError(f"fitting_net.sel_type {sel_type} has types outside 0..{ntypes - 1}")
        exclude = [t for t in range(ntypes) if t not in sel_type]
    else:
        exclude = [int(t) for t in fc.get("exclude_types", [])]
    # deepmd-kit 3.x keeps the exclusion at model level (atom_exclude_types) and
    # copies it into the fitting; sel_type is its complement
    exclude = sorted(set(exclude) | {int(t) for t in config.get("atom_exclude_types", [])})
    M1 = desc.neuron[-1]
    fit_diag = bool(fc.get("fit_diag", True))
    nout = M1 if ftype == "dipole" or fit_diag else M1 * M1
    resnet_dt = bool(fc.get("resnet_dt", True))
    nets = [init_mlp(rng, desc.dim_out, fneuron, resnet_dt=resnet_dt, out_dim=nout,
                     activation=fact) for _ in range(ntypes)]
    scale = fc.get("scale", 1.0)
    scale = np.full(ntypes, float(scale)) if np.ndim(scale) == 0 else np.asarray(scale, float)
    if scale.shape != (ntypes,):
        raise ValueError(f"fitting_net.scale must be a number or {ntypes} numbers, got {scale}")
    fit = TensorFitting(kind=ftype, neuron=fneuron, nets=nets, bias_atom=np.zeros((ntypes, nout)),
                        embedding_width=M1, resnet_dt=resnet_dt, exclude_types=exclude,
                        fit_diag=fit_diag, scale=scale, shift_diag=bool(fc.get("shift_diag", True)),
                        precision=fc.get("precision", desc.precision), activation_function=fact)
    odim = 3 if ftype == "dipole" else 9
    return DeepTensor(type_map=type_map, descriptor=desc, fitting=fit,
                      out_bias=np.zeros((ntypes, odim)), out_std=np.ones((ntypes, odim)),
                      atom_exclude_types=list(exclude),
                      pair_exclude_types=[tuple(p) for p in config.get("pair_exclude_types", [])])


def randomize_statistics(model: DeepPot | DeepTensor, seed: int = 0) -> DeepPot | DeepTensor:
    """Give ``model`` non-trivial statistics and biases in place (for tests and demos).

    The structure deepmd-kit's statistics have is kept, because the symmetries
    depend on it: for centre type t and neighbour-type group g,
    ``davg[t, slots of g] = (a_tg, 0, 0, 0)`` and ``dstd[t, slots of g] =
    (s_tg, σ_tg, σ_tg, σ_tg)`` (a nonzero mean or unequal scales of the x, y, z
    columns would break rotation invariance; values varying inside a group
    would make the energy jump when two neighbours swap order).
    ``a`` ~ N(0, 0.05²), ``s``, ``σ`` ~ U(0.5, 2), ``bias_atom_e`` and
    ``out_bias`` ~ N(0, 1) per type (a :class:`DeepTensor`: ``bias_atom`` ~
    N(0, 0.1²) per coefficient, ``constant_matrix`` and ``out_bias`` ~ N(0, 1)).
    Returns ``model``.
    """
    rng = np.random.default_rng(seed)
    for d in getattr(model.descriptor, "members", [model.descriptor]):  # a hybrid: each member
        off = d.sel_offsets
        davg = np.zeros_like(d.davg)
        dstd = np.ones_like(d.dstd)
        for t in range(d.ntypes):
            for g in range(d.ntypes):
                sl = slice(off[g], off[g + 1])
                davg[t, sl, 0] = 0.05 * rng.normal()
                dstd[t, sl, 0] = rng.uniform(0.5, 2.0)
                dstd[t, sl, 1:] = rng.uniform(0.5, 2.0)
        d.davg, d.dstd = davg, dstd
    if isinstance(model, DeepTensor):  # bias per output coefficient; polar: also c_t
        fit = model.fitting
        fit.bias_atom = 0.1 * rng.normal(size=fit.bias_atom.shape)
        fit.constant_matrix = rng.normal(size=model.ntypes)
        model.out_bias = rng.normal(size=model.out_bias.shape)
        return model
    model.fitting.bias_atom_e = rng.normal(size=model.ntypes)
    model.out_bias = rng.normal(size=model.ntypes)
    return model


def demo_model(config: dict, seed: int = 0,
               fitting_gain: float = 30.0) -> DeepPot | DeepTensor:
    """A random model that behaves like a trained one, for demos and tests.

    :func:`build_model` + :func:`randomize_statistics`, then the first layer of
    every fitting net is multiplied by ``fitting_gain``: a random net on a
    normalised descriptor (entries O(1e-3)) gives a very flat energy, while the
    gain brings forces to O(0.1-1) eV/Å as in a trained model.
    """
    model = randomize_statistics(build_model(config, seed=seed), seed=seed + 1)
    for net in model.fitting.nets:
        net[0].w = net[0].w * fitting_gain
    return model
