r"""The numba path of compressed se_e3 and se_e2_r descriptors (tabulated nets).

:func:`tabulated_descriptor_forward` is :func:`symref.fast.se_e3.scalar_descriptor_forward`
for a descriptor with ``tables``: the kernels of :mod:`symref.fast.kernels.tabulated_se_t`
(se_e3: deepmd-kit's se_t look-up over θ) and :mod:`symref.fast.kernels.tabulated_se_r`
(se_e2_r: the se_e2_a look-up over s), one centre per thread, instead of the nets.  Its
context is the one :func:`symref.fast.se_e3.scalar_descriptor_backward` takes, so the
backward, the frame evaluation and the hybrid's members (:mod:`symref.fast.hybrid`) run
unchanged.  An input beyond a table's end warns naming the net, as the reference does.
Float64; same numbers as the reference to round-off (tests/test_kernels_tabulated_se_t.py).
"""
from __future__ import annotations

import numpy as np

from symref.fast.kernels import se_e3 as ks
from symref.fast.kernels import tabulated_se_r as kr
from symref.fast.kernels import tabulated_se_t as kt
from symref.reference.descriptor.se_e2_a import warn_beyond_table
from symref.reference.descriptor.se_e2_r import RES_RESCALE, SeE2R
from symref.reference.descriptor.se_e3 import warn_beyond_se_t_table


def tabulated_descriptor_forward(desc, R, keep):
    """``(D, ctx)`` of a compressed se_e3 or se_e2_r ``desc`` on its rows ``R``
    (nloc x nnei x 4) with the exclusion mask ``keep`` (nloc x nnei)."""
    nloc = R.shape[0]
    if isinstance(desc, SeE2R):  # the radial column
        x, cols = np.ascontiguousarray(R[..., 0] * keep), 0  # nloc x nnei
        geometry = (kr.table_groups(desc.sel, desc.tables), RES_RESCALE / desc.nnei)
        tabs, forward, backward = (kr.pack_tables(desc.tables), kr.se_e2_r_tabulated_forward,
                                   kr.se_e2_r_tabulated_backward)
    else:  # se_e3: the three spatial columns
        x, cols = np.ascontiguousarray(R[..., 1:] * keep[..., None]), slice(1, 4)
        geometry = ks.pair_table(desc.sel)
        tabs, forward, backward = (kt.pack_tables(desc.tables), kt.se_e3_tabulated_forward,
                                   kt.se_e3_tabulated_backward)
    D = np.empty((nloc, desc.dim_out))  # nloc x M
    top = np.zeros((nloc, geometry[0].shape[0]))  # nloc x ngroups: max s or max |θ|
    forward(x, *geometry, *tabs, D, top)
    for g, row in enumerate(geometry[0]):
        if nloc:
            net = int(row[-1])
            if cols == 0:
                warn_beyond_table(top[:, g], tabs[1][net], net, stacklevel=6)
            else:
                warn_beyond_se_t_table(float(top[:, g].max()), tabs[1][net], net, stacklevel=6)
    return D, (x, cols, geometry, tabs, backward, keep, R.shape)
