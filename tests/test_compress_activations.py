"""Compression (tabulated embedding nets) of every activation deepmd-kit tabulates.

deepmd-kit's tabulation (``deepmd/utils/tabulate_math.py``, ``ACTIVATION_TO_FUNCTYPE``)
takes tanh, gelu, gelu_tf, relu, relu6, softplus, sigmoid, silu and linear/none.  For each,
symref's tables (:func:`symref.reference.tabulation.build_tables`, derivatives from
:mod:`symref.reference.activation`) are compared with deepmd-kit's own builder
(``DescrptSeA.enable_compression``), the compressed model with deepmd-kit's PyTorch
evaluation of the same compressed model, its forces with finite differences and the
numba compressed path with the NumPy reference.
"""
from __future__ import annotations

import copy
import functools
import warnings

import numpy as np
import pytest

from symref.checks import check_forces_fd
from symref.checks.common import as_calculator
from symref.io.compress import compress_model
from symref.io.model_dict import model_from_dict
from symref.reference import tabulation as tb

pytest.importorskip("deepmd")
import deepmd_ref  # noqa: E402
from test_tabulation import MIN_NBOR_DIST, WATER, _Reference  # noqa: E402

pytestmark = pytest.mark.deepmd

#: every activation deepmd-kit tabulates but tanh (test_tabulation/test_compress cover tanh)
ACTS = ["gelu", "gelu_tf", "relu", "relu6", "softplus", "sigmoid", "silu", "linear"]
SMOOTH = ["gelu", "softplus", "sigmoid", "silu", "linear"]


@functools.lru_cache(maxsize=None)
def _models(act: str):
    """(uncompressed dict, deepmd-kit-compressed dict) of one deepmd-kit model whose
    descriptor and fitting nets use ``act``."""
    from deepmd.dpmodel.model.base_model import BaseModel
    import deepmd.dpmodel.model.model  # noqa: F401

    d = deepmd_ref.make_deepmd_model_dict(True, 3, stats="type", activation_function=act,
                                          fitting_activation_function=act, **WATER)
    m = BaseModel.deserialize(copy.deepcopy(d))
    m.min_nbor_dist = MIN_NBOR_DIST
    m.enable_compression(5, 0.01, 0.1, -1)
    return d, m.serialize()


def _symref_compressed(act: str):
    return compress_model(model_from_dict(copy.deepcopy(_models(act)[0])), MIN_NBOR_DIST)


@pytest.mark.parametrize("act", ACTS)
def test_tables_equal_deepmd_builder(act):
    """Same intervals and ``info`` as deepmd-kit's builder (exactly); the Hermite data
    at the knots (coefficients c0 = G, c1 = G', c2 = G''/2) to 1e-12 relative; the tables
    as functions (value and slope, on 50001 points and every knot of the first stride) to
    1e-12.  The higher coefficients c3..c5 are divided by h³..h⁵ (h = 0.01): a one-ulp
    difference of the knot data (gelu's, softplus's... ops differ in order from deepmd-kit's)
    shows there as ~1e-5 relative while the polynomial itself changes by ~1e-13."""
    from deepmd.dpmodel.utils.tabulate import tabulate_fusion

    v = _models(act)[1]["descriptor"]["compress"]["@variables"]
    t = _symref_compressed(act).descriptor.tables
    assert len(t.data) == len(v["compress_data"]) == 2
    for k, (ours, ref) in enumerate(zip(t.data, v["compress_data"])):
        assert ours.shape == ref.shape
        np.testing.assert_array_equal(t.info[k], v["compress_info"][k])
        for j in range(3):
            a, b = ours[:, j::6], ref[:, j::6]  # nspline x M1
            assert np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))) <= 1e-12, (k, j)
        lo, up, tmax = t.info[k][:3]
        s = np.concatenate([np.linspace(lo, tmax, 50001), np.arange(lo, up, 0.01)])
        val, slope = tb.tabulated_forward(s[:, None], ours, t.info[k])
        ref_val = tabulate_fusion(ref, v["compress_info"][k], s.reshape(1, -1, 1),
                                  ref.shape[1] // 6)[0]
        _, ref_slope = tb.tabulated_forward(s[:, None], ref, t.info[k])
        assert np.max(np.abs(val - ref_val)) <= 1e-12
        assert np.max(np.abs(slope - ref_slope)) <= 1e-12


@pytest.mark.parametrize("act", ACTS)
def test_compressed_energy_forces_equal_deepmd(water_frame, act):
    """symref's compressed model (its own tables) gives the energy and atomic energies of
    deepmd-kit's NumPy backend on deepmd-kit's compressed model to 1e-10 (relative to the
    largest entry); its forces equal the central differences of deepmd-kit's compressed
    energy (Richardson-extrapolated, h = 1e-3 and 5e-4) on 3 atoms to 1e-9 eV/Å.
    (deepmd-kit's own compressed forces need its C++ ``tabulate_fusion_se_a`` op library,
    not built in this install: its PyTorch backend raises NotImplementedError.)"""
    coord, atype, box, _ = water_frame
    _, dc = _models(act)
    out = _symref_compressed(act).evaluate(coord, atype, box, backend="numpy")
    ref = deepmd_ref.dp_eval(dc, coord, atype, box)
    for key in ref:
        a, b = np.asarray(out[key]).reshape(np.shape(ref[key])), ref[key]
        assert np.max(np.abs(a - b)) <= 1e-10 * max(1.0, np.max(np.abs(b))), key

    def fd(i, c, h):
        x = np.array(coord)
        x[0, i, c] += h
        ep = deepmd_ref.dp_eval(dc, x, atype, box)["energy"][0]
        x[0, i, c] -= 2 * h
        return -(ep - deepmd_ref.dp_eval(dc, x, atype, box)["energy"][0]) / (2 * h)

    for i in (0, 1, 100):
        for c in range(3):
            f1, f2 = fd(i, c, 1e-3), fd(i, c, 5e-4)
            assert abs(out["forces"][0, i, c] - (4 * f2 - f1) / 3) <= 1e-9, (i, c)


@pytest.mark.parametrize("act", SMOOTH + ["relu"])
def test_compressed_forces_pass_fd(water_frame, act):
    """Forces of a compressed non-tanh model are the gradient of its energy (central
    differences with Richardson extrapolation, the checker's 1e-6 relative), relu too:
    its tables are C¹ (quintic Hermite) even where the net has a kink."""
    coord, atype, box, _ = water_frame
    m = _symref_compressed(act)
    res = check_forces_fd(as_calculator(_Reference(m), atype), coord[0], box.reshape(3, 3),
                          natoms_sample=3, rng=0)
    assert res.passed, res


@pytest.mark.parametrize("act", ACTS)
def test_numba_compressed_equals_reference(water_frame, act):
    """The numba compressed path (no fallback: warnings are errors) equals the NumPy
    reference on the compressed model: energies, atomic energies, forces and virial to
    1e-12 relative (issue 21's tolerance for compressed models)."""
    coord, atype, box, _ = water_frame
    m = _symref_compressed(act)
    ref = m.evaluate(coord, atype, box, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = m.evaluate(coord, atype, box, backend="numba")
    for key in ("energy", "atom_energy", "forces", "virial"):
        scale = max(np.max(np.abs(ref[key])), 1e-300)
        assert np.max(np.abs(out[key] - ref[key])) <= 1e-12 * scale, key


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_kinked_tables_error_is_reported(act, tmp_path, capsys):
    """relu/relu6 nets have kinks where a first-layer pre-activation crosses 0: deepmd-kit
    tabulates them all the same (the tables above equal its own); the table then misses
    the net on the intervals holding a kink -- value error above 1e-6, slope error above
    1e-2 (O(h²), O(h)), where a smooth activation's table is within 1e-12 / 1e-8 on the
    first stride -- and :func:`table_error` measures it; ``symref check`` states the error
    and the reason.  Away from the kinks the table is the net: at every knot (exact
    Hermite data) to 1e-12."""
    from symref.cli import main
    from symref.io.model_file import save_model

    m = _symref_compressed(act)
    save_model(m, tmp_path / "c.dp")
    main(["check", str(tmp_path / "c.dp"), "--backend", "numpy", "--sample", "1"])
    text = capsys.readouterr().out
    assert float(text.split("G_net| ")[1].split(" ")[0]) > 1e-6
    assert f"({act} embedding nets have kinks; deepmd-kit tabulates them" in text
    errs = tb.table_error(m.descriptor, m.descriptor.tables)
    assert max(e.value_first for e in errs.values()) > 1e-6
    assert max(e.slope_first for e in errs.values()) > 1e-2
    t = m.descriptor.tables
    for k, net in enumerate(m.descriptor.embeddings):
        lo, up = t.info[k][:2]
        x = tb.knots(lo, up, 5.0, 0.01, 0.1)[0][:-1]
        g_tab, _ = tb.tabulated_forward(x[:, None], t.data[k], t.info[k])
        g_net = tb.net_derivatives(x, net)[0]
        assert np.max(np.abs(g_tab - g_net)) <= 1e-12


def test_activation_deepmd_cannot_tabulate_is_refused():
    """An embedding layer whose activation deepmd-kit's tabulation refuses (``silut``:
    ``DPTabulate`` raises "Unsupported activation function") is refused by name, never
    tabulated as something else."""
    from deepmd.utils.tabulate_math import ACTIVATION_TO_FUNCTYPE

    assert set(tb.TABULATED) == set(ACTIVATION_TO_FUNCTYPE)
    m = model_from_dict(copy.deepcopy(_models("gelu")[0]))
    m.descriptor.embeddings[1][1].activation = "silut"
    with pytest.raises(ValueError, match="compression.*'silut' cannot be tabulated"):
        compress_model(m, MIN_NBOR_DIST)
