"""Which functions evaluate a descriptor: one small table keyed by the descriptor's class.

The models (:mod:`symref.model`) and the loss (:mod:`symref.train.loss`) call a
descriptor only through :func:`descriptor_ops`, so adding a descriptor means adding
its module beside the others and one row here.

=============================  ==========================  ===============================
deepmd-kit ``type`` (aliases)  parameters                  module
=============================  ==========================  ===============================
``se_e2_a`` (``se_a``)         :class:`.se_e2_a.SeE2A`     :mod:`.se_e2_a`
``se_e2_r`` (``se_r``)         :class:`.se_e2_r.SeE2R`     :mod:`.se_e2_r`
``se_e3`` (``se_at``)          :class:`.se_e3.SeE3`        :mod:`.se_e3` (also ``se_a_3be``)
``hybrid``                     :class:`.hybrid.Hybrid`     :mod:`.hybrid`
=============================  ==========================  ===============================

Every row gives

* the environment rows from the pair vectors: ``env_forward(rij, mask, atype_loc, desc)
  -> (R, cache)``, ``env_backward(dR, cache) -> (drij, None)``, ``env_tangent(rdot,
  cache) -> Rd`` (one :func:`~symref.reference.env.env_mat_forward` with the
  descriptor's statistics; a hybrid: one per member, ``R`` a list);
* the exclusion mask ``keep(desc, atype_loc, nlist)`` (:func:`.se_e2_a.keep_mask`;
  a hybrid: one per member);
* the descriptor: ``forward(R, atype_loc, keep, desc) -> (D, cache)``,
  ``backward(dD, cache, *, param_grads) -> (dR, grads)`` and the tangent pair
  ``forward_dual(R, Rd, atype_loc, keep, desc) -> (D, Dd, cache)``,
  ``backward_dual(Dbar, Ddbar, cache) -> (None, grads)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from symref.reference.descriptor import hybrid as hy
from symref.reference.descriptor.se_e2_a import (SeE2A, keep_mask, se_e2_a_backward,
                                                 se_e2_a_backward_dual, se_e2_a_forward,
                                                 se_e2_a_forward_dual)
from symref.reference.descriptor.se_e2_r import (SeE2R, se_e2_r_backward, se_e2_r_backward_dual,
                                                 se_e2_r_forward, se_e2_r_forward_dual)
from symref.reference.descriptor.se_e3 import (SeE3, se_e3_backward, se_e3_backward_dual,
                                               se_e3_forward, se_e3_forward_dual)
from symref.reference.env import env_mat_backward, env_mat_forward, env_mat_tangent


@dataclass(frozen=True)
class DescriptorOps:
    """The functions of one descriptor type (module docstring)."""

    name: str
    forward: Callable
    backward: Callable
    forward_dual: Callable
    backward_dual: Callable
    env_forward: Callable
    env_backward: Callable = env_mat_backward
    env_tangent: Callable = env_mat_tangent
    keep: Callable = keep_mask


def _env_forward(rij, mask, atype_loc, desc):
    """Environment rows of one descriptor, its statistics gathered for each centre's type."""
    return env_mat_forward(rij, mask, desc.davg[atype_loc], desc.dstd[atype_loc], desc.rcut,
                           desc.rcut_smth, desc.env_protection)


def descriptor_ops(desc) -> DescriptorOps:
    """The :class:`DescriptorOps` of ``desc``; ``TypeError`` naming the supported classes."""
    ops = _OPS.get(type(desc))
    if ops is None:
        raise TypeError(f"descriptor of class {type(desc).__name__} is not supported; symref "
                        f"implements {', '.join(c.__name__ for c in _OPS)}")
    return ops


_OPS = {
    SeE2A: DescriptorOps("se_e2_a", se_e2_a_forward, se_e2_a_backward, se_e2_a_forward_dual,
                         se_e2_a_backward_dual, _env_forward),
    SeE2R: DescriptorOps("se_e2_r", se_e2_r_forward, se_e2_r_backward, se_e2_r_forward_dual,
                         se_e2_r_backward_dual, _env_forward),
    SeE3: DescriptorOps("se_e3", se_e3_forward, se_e3_backward, se_e3_forward_dual,
                        se_e3_backward_dual, _env_forward),
    hy.Hybrid: DescriptorOps(
        "hybrid", partial(hy.hybrid_forward, ops_of=descriptor_ops), hy.hybrid_backward,
        partial(hy.hybrid_forward_dual, ops_of=descriptor_ops), hy.hybrid_backward_dual,
        hy.hybrid_env_forward, hy.hybrid_env_backward, hy.hybrid_env_tangent,
        partial(hy.hybrid_keep, keep_fn=keep_mask)),
}

#: deepmd-kit descriptor ``type`` names symref implements -> canonical name
DESCRIPTOR_TYPES = {"se_e2_a": "se_e2_a", "se_a": "se_e2_a", "se_e2_r": "se_e2_r",
                    "se_r": "se_e2_r", "se_e3": "se_e3", "se_at": "se_e3", "se_a_3be": "se_e3",
                    "hybrid": "hybrid"}


def canonical_type(name, where: str = "descriptor.type") -> str:
    """The canonical name of a deepmd-kit descriptor ``type`` (``se_a`` -> ``se_e2_a``);
    ``ValueError`` naming ``where`` and the supported types for any other."""
    if name not in DESCRIPTOR_TYPES:
        raise ValueError(f"{where}: descriptor type {name!r} is not supported; symref "
                         f"implements {', '.join(sorted(DESCRIPTOR_TYPES))}")
    return DESCRIPTOR_TYPES[name]
