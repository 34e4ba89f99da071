"""Descriptors: environment rows -> embedding G -> T = GᵀR / n -> D = T T<ᵀ.

``se_e2_a`` is deepmd-kit's two-body embedding with angular information (the only
one today; ``se_e2_r``, ``se_e3`` and ``hybrid`` belong beside it, one module each).

May import: numpy and ``symref.reference`` only.
"""
