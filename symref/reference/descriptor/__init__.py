"""Descriptors: environment rows -> embedding G -> descriptor D, one module each.

``se_e2_a``   deepmd-kit's two-body embedding with angular information: T = GᵀR / n, D = T T<ᵀ
``se_e2_r``   the radial-only two-body embedding (deepmd-kit's ``se_r``): D = mean of G / 5
``se_e3``     the three-body embedding (``se_at``): θ = X_a·X_b, D = Σ θ N(θ) / (sel_p sel_q)
``hybrid``    members side by side, each on its slots of one neighbour list
``slots``     the ``sel`` slot layout and common settings they share
``dispatch``  descriptor class -> its forward/backward/tangent functions, and the
              deepmd-kit type names symref accepts

A new descriptor is one more module here and one row in ``dispatch``.

May import: numpy and ``symref.reference`` only.
"""
