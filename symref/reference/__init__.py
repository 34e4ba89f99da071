"""The NumPy reference: the mathematics of symref, read this first.

One module per mathematical object, each with ``*_forward -> (out, cache)`` and
``*_backward(dout, cache) -> (d_input, grads)`` side by side (and, where training
needs it, the tangent/dual twins), the formula and its derivative in the docstring:

=====================  =====================================================
``nn``                 MLPs with deepmd-kit's residual rule (embedding and fitting nets)
``env``                smooth switch s(r) and environment rows R = s(r)·(1, x/r, y/r, z/r)
``neighbors``          neighbour lists of molecules and periodic triclinic cells
``core``               the symmetric core T = GᵀR / n and D = T T<ᵀ, shared with the VCNN
``descriptor/``        descriptors: ``se_e2_a`` (embedding G per type pair, T, D)
``fitting``            heads on the descriptor: per-type energy nets, dipole/polarizability
=====================  =====================================================

Data flow: coordinates -> neighbours -> environment rows -> symmetric core ->
head -> outputs; gradients flow back the same way.

May import: numpy, scipy, and modules of this subpackage only.  Nothing here
imports ``symref.fast``, ``symref.model``, ``symref.train`` or ``symref.io``:
every fast path is checked against this code, never the other way round.
"""
