"""VCNN segment-sum kernels (parallel and serial builds) against their NumPy twins, on
ragged clouds (one-point clouds included), and the stacked embedding against the
reference MLP."""
import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.fast import vcnn as fv
from symref.fast.kernels import vcnn as kv
from symref.reference.core import gram_backward, gram_forward
from symref.reference.nn import init_mlp, mlp_backward, mlp_forward


def _close(ours, ref, rtol=1e-13):
    assert_allclose_scaled(ours, ref, rtol, rtol, floor=1.0)


def _ragged(rng, M1=7, c=5):
    counts = np.array([3, 1, 9, 1, 4, 12, 2])
    ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    P = int(ptr[-1])
    return ptr, 1.0 / counts, rng.normal(size=(P, M1)), rng.normal(size=(P, c))


@pytest.mark.parametrize("build", ["parallel", "serial"])
def test_cloud_sum_forward_backward_equal_their_twins(build):
    rng = np.random.default_rng(0)
    ptr, scale, G, X = _ragged(rng)
    B = len(ptr) - 1
    fwd = kv.cloud_sum if build == "parallel" else kv.cloud_sum.serial
    bwd = kv.cloud_sum_backward if build == "parallel" else kv.cloud_sum_backward.serial
    L, Lr = np.full((B, 7, 5), np.nan), np.empty((B, 7, 5))
    fwd(G, X, ptr, scale, L)
    kv.cloud_sum_ref(G, X, ptr, scale, Lr)
    _close(L, Lr)
    # the twin is the reference core's cloud sum, cloud by cloud
    from symref.reference.core import cloud_sum_backward, cloud_sum_forward
    for b in range(B):
        rows = slice(ptr[b], ptr[b + 1])
        Lc, cache = cloud_sum_forward(G[None, rows], X[None, rows], scale[b])
        _close(L[b], Lc[0])
        dL = rng.normal(size=(1, 7, 5))
        dG_ref = cloud_sum_backward(dL, cache)[0][0][0]
        dG = np.full((len(G), 7), np.nan)
        one = np.array([0, ptr[b + 1] - ptr[b]], dtype=np.int64)
        bwd(dL, X[rows], one, scale[b:b + 1], dG[: ptr[b + 1] - ptr[b]])
        _close(dG[: ptr[b + 1] - ptr[b]], dG_ref)
    dL = rng.normal(size=(B, 7, 5))
    dG, dGr = np.full_like(G, np.nan), np.empty_like(G)
    bwd(dL, X, ptr, scale, dG)
    kv.cloud_sum_backward_ref(dL, X, ptr, scale, dGr)
    _close(dG, dGr)


def test_parallel_and_serial_builds_give_the_same_bits():
    rng = np.random.default_rng(1)
    ptr, scale, G, X = _ragged(rng)
    B = len(ptr) - 1
    a, b = np.empty((B, 7, 5)), np.empty((B, 7, 5))
    kv.cloud_sum(G, X, ptr, scale, a)
    kv.cloud_sum.serial(G, X, ptr, scale, b)
    np.testing.assert_array_equal(a, b)
    dL = rng.normal(size=(B, 7, 5))
    a, b = np.empty_like(G), np.empty_like(G)
    kv.cloud_sum_backward(dL, X, ptr, scale, a)
    kv.cloud_sum_backward.serial(dL, X, ptr, scale, b)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rows", [1, 5, 4096])
def test_stacked_core_equals_the_reference_mlp_and_cloud_sum(rows, monkeypatch):
    """core_forward/core_backward on blocks of clouds (one cloud per block up to all in
    one) against the reference embedding, cloud sum and Gram matrix on the same stacked
    points."""
    monkeypatch.setattr(fv, "BLOCK_ROWS", rows)
    monkeypatch.setattr(fv.cloud_blocks, "__defaults__", (rows,))
    rng = np.random.default_rng(2)
    ptr, scale, _, X = _ragged(rng)
    q = rng.normal(size=(len(X), 4))
    emb = init_mlp(rng, 4, [6, 12, 12], resnet_dt=True, bias_std=0.1)  # shortcuts 0, 2, 1
    L, D, cache = fv.core_forward(q, X, ptr, scale, emb, 3)
    G, e_cache = mlp_forward(q, emb)
    Lr = np.empty_like(L)
    kv.cloud_sum_ref(G, X, ptr, scale, Lr)
    _close(L, Lr)
    dD, dW = rng.normal(size=D.shape), rng.normal(size=(L.shape[0], L.shape[1], L.shape[2] - 1))
    grads = fv.core_backward(dD, dW, cache)
    dL = gram_backward(dD, (L, 3))[0]
    dL[:, :, 1:] += dW
    _close(D, gram_forward(L, 3)[0])
    dG = np.empty_like(G)
    kv.cloud_sum_backward_ref(dL, X, ptr, scale, dG)
    ref = mlp_backward(dG, e_cache)[1]
    for g, r in zip(grads, ref):
        for k in ("w", "b", "idt"):
            if r[k] is None:
                assert g[k] is None
            else:
                _close(g[k], r[k])


def test_cloud_blocks_cover_whole_clouds():
    ptr = np.array([0, 3, 4, 13, 14, 18, 30, 32], dtype=np.int64)
    for rows in (1, 4, 10, 100):
        blocks = fv.cloud_blocks(ptr, rows)
        assert blocks[0][0] == 0 and blocks[-1][1] == 7
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(blocks, blocks[1:]))
    assert len(fv.cloud_blocks(ptr, 1)) == 7
    assert fv.cloud_blocks(ptr, 100) == [(0, 7)]


@pytest.mark.parametrize("nin,nout,sc,act", [(6, 6, 1, 1), (6, 12, 2, 1), (4, 6, 0, 1),
                                             (5, 5, 1, 0), (6, 6, 1, 2), (6, 12, 2, 3),
                                             (4, 6, 0, 4), (5, 5, 1, 5), (6, 12, 2, 6),
                                             (5, 5, 1, 7)])
@pytest.mark.parametrize("res", [False, True])
def test_dense_backward_sums_equals_its_twin(nin, nout, sc, act, res):
    rng = np.random.default_rng(nin + nout + sc)
    P = 37
    dy, h = rng.normal(size=(P, nout)), np.tanh(rng.normal(size=(P, nout)))
    dyres = rng.normal(size=(P, nout)) if res else np.empty((0, 0))
    idt = rng.normal(size=nout)
    out = []
    for f in (kv.dense_backward_sums, kv.dense_backward_sums_ref):
        dz, dxres = np.full((P, nout), np.nan), np.full((P, nin) if sc else (0, 0), np.nan)
        gb, gidt = np.ones(nout), np.ones(nout)  # accumulated into
        f(dy, dyres, h, idt, sc, act, dz, dxres, gb, gidt)
        out.append((dz, dxres, gb, gidt))
    for a, b in zip(*out):
        _close(a, b)


@pytest.mark.parametrize("build", ["parallel", "serial"])
@pytest.mark.parametrize("M2", [1, 3, 7])
def test_gram_forward_backward_equal_their_twins(build, M2):
    rng = np.random.default_rng(M2)
    L, dD = rng.normal(size=(6, 7, 5)), rng.normal(size=(6, 7, M2))
    fwd = kv.gram if build == "parallel" else kv.gram.serial
    bwd = kv.gram_backward if build == "parallel" else kv.gram_backward.serial
    D, Dr = np.full((6, 7, M2), np.nan), np.empty((6, 7, M2))
    fwd(L, M2, D)
    kv.gram_ref(L, M2, Dr)
    _close(D, Dr)
    dL, dLr = np.full_like(L, np.nan), np.empty_like(L)
    bwd(dD, L, M2, dL)
    kv.gram_backward_ref(dD, L, M2, dLr)
    _close(dL, dLr)
