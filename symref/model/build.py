"""Building models: from a deepmd-kit-style config, with random statistics, demo models.

``build_model``           a new se_e2_a + energy (:class:`~symref.model.deeppot.DeepPot`) or
                          dipole/polar (:class:`~symref.model.tensor.DeepTensor`) model
``randomize_statistics``  non-trivial davg/dstd and biases with deepmd-kit's structure
``demo_model``            a random model that behaves like a trained one (tests, demos)
"""
from __future__ import annotations

import numpy as np

from symref.model.base import dtype_of
from symref.model.deeppot import DeepPot
from symref.model.tensor import DeepTensor
from symref.reference.activation import canonical_activation
from symref.reference.descriptor.se_e2_a import SeE2A
from symref.reference.fitting import EnergyFitting, TensorFitting
from symref.reference.nn import init_mlp


def build_model(config: dict, seed: int = 0) -> DeepPot | DeepTensor:
    """A new randomly initialised model from a deepmd-kit-style ``model`` config.

    ``config = {"type_map": [...], "descriptor": {"type": "se_e2_a", "rcut",
    "rcut_smth", "sel", "neuron", "axis_neuron", "resnet_dt", "type_one_side",
    "exclude_types", "env_protection", "set_davg_zero", "precision"},
    "fitting_net": {"neuron", "resnet_dt", "precision"}}``.  Statistics start neutral (``davg`` 0, ``dstd`` 1, biases 0).
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
    dtype_name = dc.get("type", "se_e2_a")
    if dtype_name not in ("se_e2_a", "se_a"):
        raise ValueError(f"descriptor type {dtype_name!r} is not implemented (only se_e2_a)")
    ftype = fc.get("type", "ener")
    if ftype not in ("ener", "dipole", "polar"):
        raise ValueError(f"fitting_net type {ftype!r} is not implemented "
                         "(ener, dipole, polar)")
    sel = dc.get("sel")
    if not isinstance(sel, (list, tuple)) or len(sel) != ntypes or \
            any(not isinstance(s, (int, np.integer)) or s < 0 for s in sel):
        raise ValueError(f"descriptor.sel must be a list of {ntypes} non-negative ints "
                         f"(one per type in type_map), got {sel!r}")
    rcut, rcut_smth = float(dc["rcut"]), float(dc.get("rcut_smth", 0.5))
    if not 0 <= rcut_smth < rcut:
        raise ValueError(f"need 0 <= rcut_smth < rcut, got rcut_smth={rcut_smth}, rcut={rcut}")
    neuron = list(dc.get("neuron", [24, 48, 96]))
    axis = int(dc.get("axis_neuron", 8))
    if not 0 < axis <= neuron[-1]:
        raise ValueError(f"axis_neuron must be in 1..neuron[-1]={neuron[-1]}, got {axis}")
    one_side = bool(dc.get("type_one_side", True))
    resnet_dt = bool(dc.get("resnet_dt", False))
    precision = dc.get("precision", "float64")
    dtype_of(precision)
    dact = canonical_activation(dc.get("activation_function", "tanh"),
                                "descriptor.activation_function")
    rng = np.random.default_rng(seed)
    nnets = ntypes if one_side else ntypes * ntypes
    embeddings = [init_mlp(rng, 1, neuron, resnet_dt=resnet_dt, activation=dact)
                  for _ in range(nnets)]
    nnei = int(sum(sel))
    desc = SeE2A(rcut=rcut, rcut_smth=rcut_smth, sel=[int(s) for s in sel], neuron=neuron,
                 axis_neuron=axis, embeddings=embeddings,
                 davg=np.zeros((ntypes, nnei, 4)), dstd=np.ones((ntypes, nnei, 4)),
                 resnet_dt=resnet_dt, type_one_side=one_side,
                 exclude_types=[tuple(p) for p in dc.get("exclude_types", [])],
                 env_protection=float(dc.get("env_protection", 0.0)),
                 set_davg_zero=bool(dc.get("set_davg_zero", False)), precision=precision,
                 activation_function=dact)
    fneuron = list(fc.get("neuron", [240, 240, 240]))
    fact = canonical_activation(fc.get("activation_function", "tanh"),
                                "fitting_net.activation_function")
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
    d = model.descriptor
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
