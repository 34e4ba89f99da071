"""se_e2_a core: D against an explicit per-atom loop; backward (inputs and embedding weights) against FD."""
import numpy as np
import pytest

import symref
from symref.reference.descriptor.se_e2_a import keep_mask, se_e2_a_backward, se_e2_a_forward
from symref.reference.nn import mlp_forward
from fd import num_grad
from tolerance import assert_close


def small_model(one_side, exclude=()):
    cfg = {"type_map": ["A", "B"],
           "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 1.0, "sel": [3, 4],
                          "neuron": [3, 6, 6], "axis_neuron": 2, "resnet_dt": True,
                          "type_one_side": one_side, "exclude_types": list(exclude)},
           "fitting_net": {"neuron": [5, 5]}}
    return symref.build_model(cfg, seed=7).descriptor


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    nloc, nnei = 4, 7
    R = rng.normal(size=(nloc, nnei, 4))
    atype = np.array([0, 1, 1, 0])
    nlist = np.where(rng.uniform(size=(nloc, nnei)) < 0.8, 1, -1)
    return R, atype, nlist


@pytest.mark.parametrize("one_side,exclude", [(True, ()), (False, ()), (False, [(0, 1)]), (True, [(1, 1)])])
def test_descriptor_matches_explicit_loop(one_side, exclude):
    desc = small_model(one_side, exclude)
    R, atype, nlist = inputs()
    keep = keep_mask(desc, atype, nlist)
    D, _ = se_e2_a_forward(R, atype, keep, desc)
    slot_type = np.repeat([0, 1], desc.sel)
    ex = {tuple(p) for p in exclude} | {tuple(p[::-1]) for p in exclude}
    for i in range(R.shape[0]):
        T = np.zeros((desc.neuron[-1], 4))
        for j in range(R.shape[1]):
            tj = slot_type[j]
            if nlist[i, j] >= 0 and (atype[i], tj) in ex:
                continue
            net = desc.embeddings[tj if one_side else atype[i] + 2 * tj]
            G = mlp_forward(np.array([[R[i, j, 0]]]), net)[0][0]
            T += np.outer(G, R[i, j])
        T /= R.shape[1]
        np.testing.assert_allclose(D[i], (T @ T[:desc.axis_neuron].T).reshape(-1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("one_side,exclude", [(True, ()), (False, [(0, 1)])])
def test_descriptor_backward_matches_fd(one_side, exclude):
    desc = small_model(one_side, exclude)
    R, atype, nlist = inputs(1)
    keep = keep_mask(desc, atype, nlist)
    D, cache = se_e2_a_forward(R, atype, keep, desc)
    c = np.random.default_rng(2).normal(size=D.shape)
    dR, grads = se_e2_a_backward(c, cache, param_grads=True)

    def loss_R(z):
        return (se_e2_a_forward(z, atype, keep, desc)[0] * c).sum()
    assert_close(dR, num_grad(loss_R, R), 1e-7, atol=1e-10, what="dD/dR")
    for idx, g in grads.items():
        for k, ly in enumerate(desc.embeddings[idx]):
            def loss_w(v, ly=ly):
                old = ly.w
                ly.w = v
                val = (se_e2_a_forward(R, atype, keep, desc)[0] * c).sum()
                ly.w = old
                return val
            assert_close(g[k]["w"], num_grad(loss_w, ly.w), 1e-7, atol=1e-10, what=f"net {idx} layer {k} w")
