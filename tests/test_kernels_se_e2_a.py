"""se_e2_a pair kernels (parallel and serial builds) against their NumPy twins.

Random segments with ragged pair counts (including atoms without pairs).  The
tabulated-embedding kernels (compressed models) on tables whose bounds are chosen so
that the pairs' s fall below ``lower``, in both strides, beyond ``table_max`` and
exactly on ``lower``, ``upper`` and ``table_max``, and on empty tables."""
import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.fast.kernels import se_e2_a as ks
from symref.fast.kernels import tabulated as kt
from symref.reference.tabulation import tabulated_forward

RCUT, RS = 6.0, 0.5


def _close(ours, ref, rtol=1e-13):
    assert_allclose_scaled(ours, ref, rtol, rtol, floor=1.0)


def _segment(rng, na=9, nt=2):
    counts = rng.integers(0, 7, size=na)
    counts[2] = 0  # an atom without neighbours
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    P = int(ptr[-1])
    d = rng.normal(size=(P, 3))
    rij = d / np.linalg.norm(d, axis=1, keepdims=True) * rng.uniform(0.8, RCUT * 0.999, size=(P, 1))
    types = rng.integers(0, nt, size=na)
    davg = np.zeros((nt, 4))
    davg[:, 0] = rng.normal(size=nt) * 0.1
    dstd = rng.uniform(0.5, 2.0, size=(nt, 4))
    return ptr, rij, types, davg, dstd


def _builds(name, module=ks):
    k = getattr(module, name)
    return [k, k.serial]


@pytest.mark.parametrize("protection", [0.0, 0.3])
@pytest.mark.parametrize("n1,sc,act", [(25, 0, 1), (2, 2, 1), (1, 1, 1), (3, 0, 0), (25, 0, 2),
                                       (2, 2, 3), (1, 1, 4), (3, 0, 5), (2, 2, 6), (1, 1, 7)])
def test_env_embed_forward_backward(protection, n1, sc, act):
    rng = np.random.default_rng(n1 + sc)
    ptr, rij, types, davg, dstd = _segment(rng)
    P = len(rij)
    w, b, idt = rng.normal(size=(1, n1)), rng.normal(size=n1), rng.normal(size=n1)
    args = (rij, ptr, types, davg, dstd, RCUT, RS, protection, w, b, idt, sc, act)
    ref = [np.empty((P, 4)), np.empty((P, n1)), np.empty((P, n1))]
    ks.env_embed_forward_ref(*args, *ref)
    dy, dR = rng.normal(size=(P, n1)), rng.normal(size=(P, 4))
    bargs = (rij, ptr, types, dstd, RCUT, RS, protection, w, idt, sc, act, ref[1], dy)
    for dyres in (np.empty((0, 0)), rng.normal(size=(P, n1))):
        ref_g = np.empty((P, 3))
        ks.env_embed_backward_ref(*bargs, dyres, dR, ref_g)
        for fwd, bwd in zip(_builds("env_embed_forward"), _builds("env_embed_backward")):
            out = [np.empty((P, 4)), np.empty((P, n1)), np.empty((P, n1))]
            fwd(*args, *out)
            for o, r in zip(out, ref):
                _close(o, r)
            g = np.empty((P, 3))
            bwd(*bargs, dyres, dR, g)
            _close(g, ref_g)


@pytest.mark.parametrize("nin,M1,sc,act", [(50, 100, 2, 1), (8, 8, 1, 1), (4, 6, 0, 1),
                                            (3, 5, 0, 0), (50, 100, 2, 2), (8, 8, 1, 3),
                                            (4, 6, 0, 4), (3, 5, 0, 5), (50, 100, 2, 6),
                                            (8, 8, 1, 7)])
def test_embed_T_forward_backward(nin, M1, sc, act):
    rng = np.random.default_rng(nin + M1)
    ptr, rij, types, davg, dstd = _segment(rng)
    na, P = len(ptr) - 1, int(ptr[-1])
    x, z, R = rng.normal(size=(P, nin)), rng.normal(size=(P, M1)), rng.normal(size=(P, 4))
    b, idt = rng.normal(size=M1), rng.normal(size=M1)
    zr, Tr = z.copy(), rng.normal(size=(na, 4, M1))
    T0 = Tr.copy()
    ks.embed_T_forward_ref(zr, b, idt, x, sc, act, R, ptr, Tr)
    dT = rng.normal(size=(na, M1, 4))
    ref = [np.empty((P, M1)), np.zeros((P, nin)), np.empty((P, 4))]
    ks.embed_T_backward_ref(zr, x, idt, sc, act, R, ptr, dT, *ref)
    for fwd, bwd in zip(_builds("embed_T_forward"), _builds("embed_T_backward")):
        zz, T = z.copy(), T0.copy()
        fwd(zz, b, idt, x, sc, act, R, ptr, T)
        _close(zz, zr)
        _close(T, Tr)
        out = [np.empty((P, M1)), np.zeros((P, nin)), np.empty((P, 4))]
        bwd(zz, x, idt, sc, act, R, ptr, dT, *out)
        for o, r in zip(out, ref):
            _close(o, r)


def test_descriptor_forward_backward():
    rng = np.random.default_rng(3)
    na, M1, M2 = 5, 12, 4
    T = rng.normal(size=(na, 4, M1))
    dD = rng.normal(size=(na, M1 * M2))
    D_ref, dT_ref = np.empty((na, M1 * M2)), np.empty((na, M1, 4))
    ks.descriptor_forward_ref(T, M2, D_ref)
    ks.descriptor_backward_ref(dD, T, M2, 0.25, dT_ref)
    for fwd, bwd in zip(_builds("descriptor_forward"), _builds("descriptor_backward")):
        D, dT = np.empty_like(D_ref), np.empty_like(dT_ref)
        fwd(T, M2, D)
        bwd(dD, T, M2, 0.25, dT)
        _close(D, D_ref)
        _close(dT, dT_ref)


def test_descriptor_backward_is_the_gradient():
    """The twin's backward is the derivative of its forward (central differences)."""
    rng = np.random.default_rng(4)
    na, M1, M2 = 2, 6, 3
    T = rng.normal(size=(na, 4, M1))
    dD = rng.normal(size=(na, M1 * M2))
    dT = np.empty((na, M1, 4))
    ks.descriptor_backward_ref(dD, T, M2, 1.0, dT)
    h = 1e-6
    num = np.empty_like(dT)
    for idx in np.ndindex(na, M1, 4):
        a, k, c = idx
        vals = []
        for sgn in (1, -1):
            Tp = T.copy()
            Tp[a, c, k] += sgn * h
            D = np.empty((na, M1 * M2))
            ks.descriptor_forward_ref(Tp, M2, D)
            vals.append(np.sum(dD * D))
        num[idx] = (vals[0] - vals[1]) / (2 * h)
    np.testing.assert_allclose(dT, num, rtol=1e-7, atol=1e-8)


def test_pair_grouping_reverse_index_and_gather():
    rng = np.random.default_rng(5)
    n, nt = 11, 3
    counts = rng.integers(0, 8, size=n)
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    P = int(ptr[-1])
    j = rng.integers(0, n, size=P)
    rij = rng.normal(size=(P, 3))
    atype = rng.integers(0, nt, size=n)
    perm = np.argsort(atype, kind="stable")
    inv_perm = np.empty(n, dtype=np.int64)
    inv_perm[perm] = np.arange(n)
    rule = np.ones((nt, nt), dtype=np.int64)
    rule[0, 1] = rule[1, 0] = 0
    rule[2, 2] = 2
    res = []
    for count, group in ((ks.count_pairs, ks.group_pairs), (ks.count_pairs.serial, ks.group_pairs.serial),
                         (ks.count_pairs_ref, ks.group_pairs_ref)):
        nkeep, nreal = np.empty((n, nt), dtype=np.int64), np.empty((n, nt), dtype=np.int64)
        count(ptr, j, atype, inv_perm, rule, nt, nkeep, nreal)
        cptr = np.zeros((nt, n + 1), dtype=np.int64)
        base = 0
        for t in range(nt):
            cptr[t, 1:] = np.cumsum(nkeep[:, t])
            cptr[t] += base
            base = int(cptr[t, n])
        j_out, rij_out = np.empty(base, dtype=np.int64), np.empty((base, 3))
        group(ptr, j, rij, atype, inv_perm, rule, nt, cptr, j_out, rij_out)
        res.append((nkeep, nreal, cptr, j_out, rij_out))
    for r in res[:2]:
        for a, b in zip(r, res[2]):
            np.testing.assert_array_equal(a, b)
    nkeep, nreal, cptr, j_out, rij_out = res[2]
    assert nreal.sum() > nkeep.sum()  # rule 2 pairs are real but not kept
    rp, ri = ks.reverse_index(j_out, n)
    rp2, ri2 = ks.reverse_index_ref(j_out, n)
    np.testing.assert_array_equal(rp, rp2)
    np.testing.assert_array_equal(ri, ri2)
    g = rng.normal(size=(len(j_out), 3))
    ref = [np.empty((n, 3)), np.empty((n, 3, 3))]
    ks.forces_virial_gather_ref(g, rij_out, cptr, rp, ri, *ref)
    assert abs(ref[0].sum()) < 1e-12  # pair forces cancel
    for f in _builds("forces_virial_gather"):
        out = [np.empty((n, 3)), np.empty((n, 3, 3))]
        f(g, rij_out, cptr, rp, ri, *out)
        _close(out[0], ref[0])
        _close(out[1], ref[1])


def test_centre_virial_and_fold_neighbours():
    """centre_virial: weighted per-centre virial; all weights 1 give the gather's total
    virial.  fold_neighbours: redirects only the pairs of the first nown centres."""
    rng = np.random.default_rng(9)
    n, nt = 10, 2
    cptr = np.zeros((nt, n + 1), dtype=np.int64)
    base = 0
    for t in range(nt):
        cptr[t, 1:] = np.cumsum(rng.integers(0, 5, size=n))
        cptr[t] += base
        base = int(cptr[t, n])
    g, rij = rng.normal(size=(base, 3)), rng.normal(size=(base, 3))
    weight = (rng.uniform(size=n) < 0.5).astype(float)
    ref, out = np.empty((3, 3)), np.empty((3, 3))
    ks.centre_virial_ref(g, rij, cptr, weight, ref)
    ks.centre_virial(g, rij, cptr, weight, out)
    _close(out, ref)
    assert np.abs(ref).max() > 0
    j = rng.integers(0, n, size=base)
    rp, ri = ks.reverse_index(j, n)
    F, W = np.empty((n, 3)), np.empty((n, 3, 3))
    ks.forces_virial_gather_ref(g, rij, cptr, rp, ri, F, W)
    ks.centre_virial(g, rij, cptr, np.ones(n), out)
    _close(out, W.sum(axis=0))
    fold = rng.integers(0, n, size=n)
    for nown in (0, 4, n):
        a, b = j.copy(), j.copy()
        ks.fold_neighbours(a, cptr, fold, nown)
        ks.fold_neighbours_ref(b, cptr, fold, nown)
        np.testing.assert_array_equal(a, b)
        own = np.zeros(base, dtype=bool)
        for t in range(nt):
            own[cptr[t, 0]:cptr[t, nown]] = True
        np.testing.assert_array_equal(a[~own], j[~own])
        np.testing.assert_array_equal(a[own], fold[j[own]])


# ------------------------------------------------------------ tabulated embedding
def _table(rng, s, M1, stride0=0.1, stride1=0.5):
    """(data, info) with lower, upper and table_max equal to three of the pairs' s."""
    srt = np.sort(s)
    n = len(srt)
    lower, upper, tmax = srt[n // 8], srt[n // 2], srt[(7 * n) // 8]
    nspline = int((upper - lower) / stride0 + (tmax - upper) / stride1)
    data = rng.normal(size=(nspline, 6 * M1))  # nspline x 6*M1 (deepmd-kit's layout)
    info = np.array([lower, upper, tmax, stride0, stride1, -1.0])
    coef = kt.table_coefficients(data)  # nspline x 6 x M1
    np.testing.assert_array_equal(kt.table_data(coef), data)
    return coef, info


@pytest.mark.parametrize("protection", [0.0, 0.3])
@pytest.mark.parametrize("M1,na", [(1, 11), (7, 11), (8, 11), (100, 11), (0, 11), (100, 75)])
def test_env_table_T_forward_backward(protection, M1, na):
    """M1 = 0: an empty table (the group adds nothing to T, its pairs get no gradient).
    na = 75 > kt.CHUNKS: chunks of several centres reuse their scratch rows."""
    rng = np.random.default_rng(M1 + int(10 * protection) + na)
    ptr, rij, types, davg, dstd = _segment(rng, na=na)
    davg[:, 0] = 0.25  # s = R[:, 0] spreads over about [-2.5, 12]
    dstd[...] = rng.uniform(0.08, 0.12, size=dstd.shape)
    na, P = len(ptr) - 1, len(rij)
    Rs = np.empty((P, 4))
    ks.env_rows_ref(rij, ptr, types, davg, dstd, RCUT, RS, protection, Rs)
    m = M1 or 5
    if M1:
        data, info = _table(rng, Rs[:, 0], M1)
        assert Rs[:, 0].min() < info[0] and Rs[:, 0].max() > info[2]  # both extrapolations
    else:
        data, info = kt.table_coefficients(np.empty(0)), np.empty(0)
    T0 = rng.normal(size=(na, 4, m))
    args = (rij, ptr, types, davg, dstd, RCUT, RS, protection, data, info)
    R_ref, T_ref = np.empty((P, 4)), T0.copy()
    kt.env_table_T_forward_ref(*args, R_ref, T_ref)
    if not M1:
        np.testing.assert_array_equal(T_ref, T0)
    # the padded slots' term T[a] += npad[a] * cpad (npad 0 for some centres)
    npad = rng.integers(0, 3, size=na).astype(float)
    cpad = rng.normal(size=(4, m)) if M1 else np.zeros((4, m))
    Tp_ref = T0.copy()
    kt.env_table_T_forward_ref(*args, np.empty((P, 4)), Tp_ref, npad, cpad)
    np.testing.assert_array_equal(Tp_ref - T_ref != 0, (npad[:, None, None] * cpad != 0))
    dT = rng.normal(size=(na, m, 4))
    bargs = (rij, ptr, types, dstd, RCUT, RS, protection, data, info, R_ref, dT)
    g_ref = np.empty((P, 3))
    kt.env_table_T_backward_ref(*bargs, g_ref)
    for fwd, bwd in zip(_builds("env_table_T_forward", kt), _builds("env_table_T_backward", kt)):
        R, T = np.empty((P, 4)), T0.copy()
        fwd(*args, R, T)
        _close(R, R_ref)
        _close(T, T_ref)
        Tp = T0.copy()
        fwd(*args, np.empty((P, 4)), Tp, npad, cpad)
        _close(Tp, Tp_ref)
        g = np.full((P, 3), np.nan)
        bwd(*bargs, g)
        _close(g, g_ref)


def test_table_locate_equals_the_reference_on_knots_and_edges():
    """k, t and e of every s reproduce tabulated_forward on a table whose column a is
    c_m = [a == m]: G = t^a + a t^(a-1) e exposes t and e separately."""
    lower, upper, tmax, h0, h1 = -1.0, 2.0, 10.0, 0.1, 0.5
    nspline = int((upper - lower) / h0 + (tmax - upper) / h1)
    data = np.zeros((nspline, 36))
    for a in range(6):
        data[:, 6 * a + a] = 1.0
    data[:, 0::6] += np.arange(nspline)[:, None] * 100.0  # the interval shows in c_0
    info = np.array([lower, upper, tmax, h0, h1, -1.0])
    knots = np.concatenate([lower + h0 * np.arange(31), upper + h1 * np.arange(17)])
    s = np.concatenate([knots, knots - 1e-12, knots + 1e-12, [-50.0, 0.05, 2.3, 9.99, 10.0, 300.0]])
    G_ref, dG_ref = tabulated_forward(s[:, None], data, info)
    out = np.empty((len(s), 6, 2))
    _locate_all(s, info, nspline, kt.table_coefficients(data), out)
    _close(out[:, :, 0], G_ref)
    _close(out[:, :, 1], dG_ref)


def _locate_all(s, info, nspline, coef, out):
    """(value, slope) of the 6 columns at every s through the kernels' helpers."""
    import numba

    @numba.njit
    def run(s, info, nspline, coef, out):
        for i in range(s.shape[0]):
            k, t, e = kt.table_locate(s[i], info[0], info[1], info[2], info[3], info[4], nspline)
            for c in range(6):
                out[i, c, 0], out[i, c, 1] = kt.table_column(coef[k], c, t, e)

    run(s, info, nspline, coef, out)


@pytest.mark.parametrize("M1", [1, 7, 100])
def test_table_rows(M1):
    """G at single values (the padded slots' rows): inside, on the edges, both extrapolations."""
    rng = np.random.default_rng(M1)
    s = np.concatenate([rng.uniform(-3.0, 14.0, size=40), [-1.0, 2.0, 10.0, 100.0]])
    coef, info = _table(rng, np.linspace(-2.0, 12.0, 64), M1)
    G_ref = np.empty((len(s), M1))
    kt.table_rows_ref(coef, info, s, G_ref)
    for build in _builds("table_rows", kt):
        G = np.full((len(s), M1), np.nan)
        build(coef, info, s, G)
        _close(G, G_ref)
