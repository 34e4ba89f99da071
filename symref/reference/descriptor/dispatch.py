"""Which functions evaluate a descriptor: one small table keyed by the descriptor's class.

The models (:mod:`symref.model`) and the loss (:mod:`symref.train.loss`) call a
descriptor only through :func:`descriptor_ops`, so adding a descriptor means adding
its module beside the others and one row here.

=============================  ==========================  ===============================
deepmd-kit ``type`` (aliases)  parameters                  module
=============================  ==========================  ===============================
``se_e2_a`` (``se_a``)         :class:`.se_e2_a.SeE2A`     :mod:`.se_e2_a`
``se_e2_r`` (``se_r``)         :class:`.se_e2_r.SeE2R`     :mod:`.se_e2_r`
=============================  ==========================  ===============================

Every row gives ``forward(R, atype_loc, keep, desc) -> (D, cache)``,
``backward(dD, cache, *, param_grads) -> (dR, grads)`` and the tangent pair
``forward_dual(R, Rd, atype_loc, keep, desc) -> (D, Dd, cache)``,
``backward_dual(Dbar, Ddbar, cache) -> (None, grads)``.  The exclusion mask
``keep`` is :func:`.se_e2_a.keep_mask` for all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from symref.reference.descriptor.se_e2_a import (SeE2A, se_e2_a_backward, se_e2_a_backward_dual,
                                                 se_e2_a_forward, se_e2_a_forward_dual)
from symref.reference.descriptor.se_e2_r import (SeE2R, se_e2_r_backward, se_e2_r_backward_dual,
                                                 se_e2_r_forward, se_e2_r_forward_dual)


@dataclass(frozen=True)
class DescriptorOps:
    """The functions of one descriptor type (module docstring)."""

    name: str
    forward: Callable
    backward: Callable
    forward_dual: Callable
    backward_dual: Callable


_OPS = {
    SeE2A: DescriptorOps("se_e2_a", se_e2_a_forward, se_e2_a_backward, se_e2_a_forward_dual,
                         se_e2_a_backward_dual),
    SeE2R: DescriptorOps("se_e2_r", se_e2_r_forward, se_e2_r_backward, se_e2_r_forward_dual,
                         se_e2_r_backward_dual),
}

#: deepmd-kit descriptor ``type`` names symref implements -> canonical name
DESCRIPTOR_TYPES = {"se_e2_a": "se_e2_a", "se_a": "se_e2_a", "se_e2_r": "se_e2_r",
                    "se_r": "se_e2_r"}


def descriptor_ops(desc) -> DescriptorOps:
    """The :class:`DescriptorOps` of ``desc``; ``TypeError`` naming the supported classes."""
    ops = _OPS.get(type(desc))
    if ops is None:
        raise TypeError(f"descriptor of class {type(desc).__name__} is not supported; symref "
                        f"implements {', '.join(c.__name__ for c in _OPS)}")
    return ops


def canonical_type(name, where: str = "descriptor.type") -> str:
    """The canonical name of a deepmd-kit descriptor ``type`` (``se_a`` -> ``se_e2_a``);
    ``ValueError`` naming ``where`` and the supported types for any other."""
    if name not in DESCRIPTOR_TYPES:
        raise ValueError(f"{where}: descriptor type {name!r} is not supported; symref "
                         f"implements {', '.join(sorted(DESCRIPTOR_TYPES))}")
    return DESCRIPTOR_TYPES[name]
