"""The NumPy reference: the mathematics of symref, read this first.

One module per mathematical object, each with ``*_forward -> (out, cache)`` and
``*_backward(dout, cache) -> (d_input, grads)`` side by side (and, where training
needs it, the tangent/dual twins), the formula and its derivative in the docstring:

=====================  =====================================================
``activation``         deepmd-kit's activations (tanh, gelu, relu, softplus...) and derivatives
``nn``                 MLPs with deepmd-kit's residual rule (embedding and fitting nets)
``env``                smooth switch s(r) and environment rows R = s(r)·(1, x/r, y/r, z/r)
``neighbors``          neighbour lists of molecules and periodic triclinic cells
``core``               the symmetric core T = GᵀR / n and D = T T<ᵀ, shared with the VCNN
``descriptor/``        descriptors: ``se_e2_a`` (embedding G per type pair, T, D), ``se_e2_r``
                       (radial only: D = mean of G / 5), ``se_e3``
                       (three-body, in blocks of centres), ``hybrid``; ``dispatch`` picks one
``fitting``            heads on the descriptor: per-type energy nets, dipole/polarizability
``tabulation``         compressed embeddings: deepmd-kit's quintic tables, built and evaluated
=====================  =====================================================

Backward convention (every ``*_backward`` and ``*_backward_dual`` of the package,
whatever its flags): the return value is always the pair ``(d_input, grads)``.

``d_input``
    the gradient with respect to the forward's array input (``dx``, ``dR``,
    ``drij``...); a tuple, in the forward's argument order, where the forward
    has several (``(dG, dX)``, ``(dD, dgr)``) and for the dual twins
    ``(x̄, ẋ̄)``; ``None`` (or ``None`` in a slot of the tuple) when not
    requested or not formed (``need_dX=False``, ``se_e2_a_backward_dual``,
    ``vcnn_backward``).
``grads``
    the parameter gradients: per layer ``{"w", "b", "idt"}`` dicts (``nn``),
    dicts keyed by the parameter's attribute name for the heads
    (``{"nets": ..., "bias_atom_e": ...}``); ``None`` for functions without
    trained parameters (``env``, ``core``) or when ``param_grads`` is false.

So ``dx, _ = f_backward(...)`` and ``_, grads = f_backward(..., param_grads=True)``
read the same everywhere.  (The numba kernels in ``symref.fast.kernels`` are
not covered: they write into output arrays they are given.)

Data flow: coordinates -> neighbours -> environment rows -> symmetric core ->
head -> outputs; gradients flow back the same way.

May import: numpy, scipy, and modules of this subpackage only.  Nothing here
imports ``symref.fast``, ``symref.model``, ``symref.train`` or ``symref.io``:
every fast path is checked against this code, never the other way round.
"""
