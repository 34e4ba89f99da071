"""Compressed (tabulated) embeddings: symref's tables and evaluation against deepmd-kit's.

deepmd-kit is the reference throughout: its own builder (``DescrptSeA.enable_compression``,
``deepmd/utils/tabulate*.py``) makes the tables and its NumPy backend (``deepmd.dpmodel``)
evaluates the compressed model; symref's :mod:`symref.reference.tabulation` is compared
with both, and with the uncompressed net it replaces.
"""
from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

from symref.checks import check_forces_fd
from symref.checks.common import as_calculator
from symref.io.model_dict import model_from_dict
from symref.reference import tabulation as tb
from symref.reference.nn import init_mlp, mlp_forward

pytest.importorskip("deepmd")
import deepmd_ref  # noqa: E402

#: water-like model: deepmd-kit's example sel/rcut, small nets (fast tables)
WATER = dict(sel=[46, 92], neuron=[4, 8, 16], axis_neuron=4, fitting_neuron=[16, 16],
             rcut=6.0, rcut_smth=0.5)
MIN_NBOR_DIST = 0.9


@functools.lru_cache(maxsize=None)
def _models(type_one_side: bool, resnet_dt: bool = False, exclude=()):
    """(uncompressed dict, deepmd-kit-compressed dict) of one deepmd-kit model."""
    from deepmd.dpmodel.model.base_model import BaseModel
    import deepmd.dpmodel.model.model  # noqa: F401

    d = deepmd_ref.make_deepmd_model_dict(type_one_side, 3, exclude_types=exclude,
                                          resnet_dt=resnet_dt, stats="type", **WATER)
    m = BaseModel.deserialize(copy.deepcopy(d))
    m.min_nbor_dist = MIN_NBOR_DIST
    m.enable_compression(5, 0.01, 0.1, -1)
    return d, m.serialize()


def deepmd_tables(type_one_side, **kw):
    dc = _models(type_one_side, **kw)[1]["descriptor"]["compress"]["@variables"]
    return dc["compress_data"], dc["compress_info"]


def symref_compressed(type_one_side, **kw):
    """symref's model of the same deepmd-kit model, tabulated by symref."""
    m = model_from_dict(copy.deepcopy(_models(type_one_side, **kw)[0]))
    m.descriptor.tables = tb.build_tables(m.descriptor, MIN_NBOR_DIST)
    return m


class _Reference:
    """A model evaluated by the NumPy reference (for the FD checker)."""

    def __init__(self, model):
        self.model = model

    def evaluate(self, coord, atype, box=None):
        return self.model.evaluate(coord, atype, box, backend="numpy")


# ------------------------------------------------------------------ the tables
@pytest.mark.parametrize("type_one_side", [True, False])
def test_tables_equal_deepmd_builder(type_one_side):
    """symref's knots, bounds, strides and quintic coefficients are deepmd-kit's own (the
    same arrays to 1e-12 of their size; in practice bit for bit): same number of
    intervals, same ``[lower, upper, table_max, stride0, stride1, check_frequency]``."""
    ref_data, ref_info = deepmd_tables(type_one_side)
    m = symref_compressed(type_one_side)
    t = m.descriptor.tables
    assert len(t.data) == len(ref_data) == (2 if type_one_side else 4)
    for k in range(len(ref_data)):
        assert t.data[k].shape == ref_data[k].shape
        np.testing.assert_array_equal(t.info[k], ref_info[k])
        scale = np.max(np.abs(ref_data[k]), axis=0)  # per coefficient column
        assert np.all(np.abs(t.data[k] - ref_data[k]) <= 1e-12 * np.maximum(scale, 1.0))


def test_net_derivatives_are_the_chain_rule():
    """``net_derivatives`` returns the net itself (``mlp_forward``, to round-off) and its
    first/second derivatives (central differences, O(h²) errors ≤ 1e-7 at h = 1e-4):
    the Hermite data the coefficients are built from."""
    rng = np.random.default_rng(0)
    layers = init_mlp(rng, 1, [4, 8, 16], resnet_dt=False)
    x = np.linspace(-1.0, 3.0, 41)
    y, dy, d2y = tb.net_derivatives(x, layers)
    np.testing.assert_allclose(y, mlp_forward(x[:, None], layers)[0], rtol=0, atol=1e-14)
    h = 1e-4
    yp, dyp, _ = tb.net_derivatives(x + h, layers)
    ym, dym, _ = tb.net_derivatives(x - h, layers)
    np.testing.assert_allclose(dy, (yp - ym) / (2 * h), rtol=0, atol=1e-7)
    np.testing.assert_allclose(d2y, (dyp - dym) / (2 * h), rtol=0, atol=1e-7)


@pytest.mark.parametrize("type_one_side", [True, False])
def test_tabulated_embedding_matches_the_net(type_one_side):
    """Inside the table the tabulated G equals the net to ≤ 1e-12 on the first stride
    (h = 0.01) and ≤ 1e-9 on the second (h = 0.1), the error stated in
    :mod:`symref.reference.tabulation`; dG/ds equals the net's derivative to ≤ 1e-8
    (quintic Hermite: O(h⁶) values, O(h⁵) slopes)."""
    m = symref_compressed(type_one_side)
    errs = tb.table_error(m.descriptor, m.descriptor.tables)
    assert len(errs) == len(m.descriptor.embeddings)
    for e in errs.values():
        assert e.value_first <= 1e-12 and e.value_second <= 1e-9
        assert e.slope_first <= 1e-8 and e.slope_second <= 1e-8
    t = m.descriptor.tables
    for k, net in enumerate(m.descriptor.embeddings):
        lo, tmax = t.info[k][0], t.info[k][2]
        s = np.linspace(lo, tmax, 3001)[:-1, None]  # n x 1
        _, dG = tb.tabulated_forward(s, t.data[k], t.info[k])
        _, dnet, _ = tb.net_derivatives(s[:, 0], net)
        assert np.max(np.abs(dG - dnet)) <= 1e-8


def test_evaluation_equals_deepmd_tabulate_fusion_out_of_range_too():
    """symref's table evaluation is deepmd-kit's ``tabulate_fusion`` (≤ 1e-13) for s below
    ``lower`` (linear extrapolation), inside both strides, on the knots, and above
    ``table_max`` (linear continuation of the last interval)."""
    from deepmd.dpmodel.utils.tabulate import tabulate_fusion

    data, info = deepmd_tables(True)
    rng = np.random.default_rng(1)
    lo, up, tmax = info[0][:3]
    s = np.concatenate([rng.uniform(lo - 3, 2 * tmax, 500), [lo, up, tmax, lo + 0.01,
                                                             up + 0.1, tmax - 1e-9]])
    ours, _ = tb.tabulated_forward(s[:, None], data[0], info[0])
    theirs = tabulate_fusion(data[0], info[0], s.reshape(1, -1, 1), data[0].shape[1] // 6)
    np.testing.assert_allclose(ours, theirs[0], rtol=0, atol=1e-13)
    assert (s < lo).any() and (s > tmax).any()


def test_tabulated_backward_is_the_slope():
    """``tabulated_backward`` is the derivative of ``tabulated_forward`` everywhere, out of
    range included: central differences agree to 1e-6 (C¹ tables)."""
    data, info = deepmd_tables(True)
    lo, tmax = info[0][0], info[0][2]
    s = np.linspace(lo - 2, tmax + 5, 997)[:, None] + 1e-3  # off the knots
    rng = np.random.default_rng(2)
    dG = rng.normal(size=(len(s), data[0].shape[1] // 6))
    _, cache = tb.tabulated_forward(s, data[0], info[0])
    ds, grads = tb.tabulated_backward(dG, cache)
    assert grads is None
    h = 1e-6
    fp = np.sum(dG * tb.tabulated_forward(s + h, data[0], info[0])[0], axis=-1)
    fm = np.sum(dG * tb.tabulated_forward(s - h, data[0], info[0])[0], axis=-1)
    np.testing.assert_allclose(ds[:, 0], (fp - fm) / (2 * h), rtol=0, atol=1e-6)


def test_resnet_dt_warning():
    """deepmd-kit's tabulation ignores the resnet_dt timestep: symref tabulates the same
    way (tables still equal deepmd-kit's) but warns, naming it."""
    ref_data, _ = deepmd_tables(True, resnet_dt=True)
    m = model_from_dict(copy.deepcopy(_models(True, resnet_dt=True)[0]))
    for net in m.descriptor.embeddings:  # deepmd-kit initialises idt randomly
        assert any(ly.idt is not None and not np.all(ly.idt == 1) for ly in net)
    with pytest.warns(RuntimeWarning, match="resnet_dt"):
        t = tb.build_tables(m.descriptor, MIN_NBOR_DIST)
    for a, b in zip(t.data, ref_data):
        np.testing.assert_array_equal(a, b)


def test_bad_table_arguments():
    """Bad builder arguments and malformed tables are refused with the value named."""
    m = symref_compressed(True)
    with pytest.raises(ValueError, match="min_nbor_dist"):
        tb.build_tables(m.descriptor, 0.0)
    with pytest.raises(ValueError, match="stride0"):
        tb.build_tables(m.descriptor, 1.0, stride0=-0.01)
    with pytest.raises(ValueError, match="compress_info"):
        tb.EmbeddingTables(data=[np.zeros((3, 12))], info=[np.zeros(5)])


# ------------------------------------------------------------------ compressed models
@pytest.mark.parametrize("type_one_side", [True, False])
def test_compressed_energy_equals_deepmd(water_frame, type_one_side):
    """symref's compressed model (its own tables) gives deepmd-kit's compressed energies
    (NumPy backend) to 1e-10 relative, atomic energies to 1e-10 eV; and differs from
    the uncompressed model only by the table error (≤ 1e-8 relative)."""
    coord, atype, box, _ = water_frame
    d, dc = _models(type_one_side)
    ref = deepmd_ref.dp_eval(dc, coord, atype, box)
    m = symref_compressed(type_one_side)
    out = m.evaluate(coord, atype, box, backend="numpy")
    assert abs(out["energy"][0] - ref["energy"][0]) <= 1e-10 * abs(ref["energy"][0])
    np.testing.assert_allclose(out["atom_energy"], ref["atom_energy"], rtol=0, atol=1e-10)
    unc = model_from_dict(copy.deepcopy(d)).evaluate(coord, atype, box, backend="numpy")
    assert abs(out["energy"][0] - unc["energy"][0]) <= 1e-8 * abs(unc["energy"][0])


def test_compressed_energy_with_exclusions(water_frame):
    """Excluded type pairs: deepmd-kit still tabulates every net (its exclusion test never
    matches), rows of excluded pairs are zeroed; energies equal deepmd-kit's (1e-10)."""
    coord, atype, box, _ = water_frame
    _, dc = _models(False, exclude=((0, 1),))
    ref = deepmd_ref.dp_eval(dc, coord, atype, box)
    m = symref_compressed(False, exclude=((0, 1),))
    assert all(np.size(x) for x in m.descriptor.tables.data)
    out = m.evaluate(coord, atype, box, backend="numpy")
    assert abs(out["energy"][0] - ref["energy"][0]) <= 1e-10 * abs(ref["energy"][0])


def test_compressed_forces_pass_fd(water_frame):
    """Forces of the compressed model are the gradient of its energy (central differences
    with Richardson extrapolation, 1e-6 relative): the backward uses the table's slope."""
    coord, atype, box, _ = water_frame
    m = symref_compressed(True)
    res = check_forces_fd(as_calculator(_Reference(m), atype), coord[0], box.reshape(3, 3),
                          natoms_sample=3, rng=0)
    assert res.passed, res


def test_compressed_descriptor_cannot_train(water_frame):
    """Tables have no parameters: asking for parameter gradients names the problem."""
    from symref.reference.descriptor.se_e2_a import se_e2_a_forward_dual

    m = symref_compressed(True)
    R = np.zeros((2, m.descriptor.nnei, 4))
    with pytest.raises(ValueError, match="compressed"):
        se_e2_a_forward_dual(R, R, np.zeros(2, dtype=int), np.ones((2, R.shape[1]), bool),
                             m.descriptor)
