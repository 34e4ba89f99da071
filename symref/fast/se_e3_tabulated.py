r"""The numba path of a compressed se_e3 descriptor (tabulated three-body nets).

:func:`tabulated_descriptor_forward` is :func:`symref.fast.se_e3.scalar_descriptor_forward`
for an se_e3 descriptor with ``tables``: the kernels of
:mod:`symref.fast.kernels.tabulated_se_t` (deepmd-kit's table look-up, one centre per
thread) instead of the nets; its context is the one
:func:`symref.fast.se_e3.scalar_descriptor_backward` takes, so the backward, the frame
evaluation and the hybrid's members (:mod:`symref.fast.hybrid`) run unchanged.  A θ
beyond a table's end warns naming the net, as the reference does.  Float64; same
numbers as the reference to round-off (tests/test_kernels_tabulated_se_t.py).
"""
from __future__ import annotations

import numpy as np

from symref.fast.kernels import se_e3 as ks
from symref.fast.kernels import tabulated_se_t as kt
from symref.reference.descriptor.se_e3 import warn_beyond_se_t_table


def tabulated_descriptor_forward(desc, R, keep):
    """``(D, ctx)`` of a compressed se_e3 ``desc`` on its rows ``R`` (nloc x nnei x 4) with
    the exclusion mask ``keep`` (nloc x nnei)."""
    x = np.ascontiguousarray(R[..., 1:] * keep[..., None])  # nloc x nnei x 3
    geometry = ks.pair_table(desc.sel)
    tabs = kt.pack_tables(desc.tables)
    D = np.empty((R.shape[0], desc.dim_out))  # nloc x M
    thmax = np.zeros((R.shape[0], geometry[0].shape[0]))  # nloc x ngroups
    kt.se_e3_tabulated_forward(x, *geometry, *tabs, D, thmax)
    for g, row in enumerate(geometry[0]):
        if thmax.shape[0]:
            warn_beyond_se_t_table(float(thmax[:, g].max()), tabs[1][row[4]], int(row[4]),
                                   stacklevel=5)
    return D, (x, slice(1, 4), geometry, tabs, kt.se_e3_tabulated_backward, keep, R.shape)
