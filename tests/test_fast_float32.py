"""float32 on the fast path (``DeepPot.evaluate(..., precision="float32")``, backend "numba").

What is proved, and the tolerances (float32's machine epsilon ε = 1.19e-7):

* the float32 tanh of the kernels is within 2 ulp of float32(tanh(x)) (correct rounding
  gives 0.5 ulp; the expm1 scheme adds ~1.5 ulp of rounding), with tanh(±0) = ±0,
  NaN -> NaN, ±inf -> ±1;
* the float32 builds of the kernels the energy path runs (dense layers, embedding + T,
  both serial and parallel) equal their NumPy twins run in float32 to
  ``atol + |ref|·rtol`` with rtol = 8ε and atol = 8ε·max|ref| for element-wise outputs
  (a few roundings and the 2-ulp tanh), atol = 64ε·max|ref| for the sums over pairs or
  over M1 (T, dR: up to ~100 terms added in another order: n·ε/√n-ish, bounded by 64ε
  for these sizes);
* whole frames in float32 against the float64 reference: forces, virial, atomic energies
  and virials within 4e-6 (~34ε) of the largest entry, the energy per atom within 4e-6
  of max|E_i| (the issue's target for forces is 1e-4; measured up to 7e-7 = 6ε: roundings
  through six layers and sums of ~100 terms), and the same against the float32 NumPy
  reference; outputs are float32; both execution modes.
"""
import warnings

import numpy as np
import pytest
from test_fastpath import config
from tolerance import assert_allclose_scaled

from symref.fast.kernels import dense as kd
from symref.fast.kernels import se_e2_a as ks
from symref.fast.kernels.activations import tanh32_inplace
from symref.io.data import make_crystal, make_molecule
from symref.model.build import demo_model

EPS32 = float(np.finfo(np.float32).eps)


def _ulps32(a, ref):
    return np.abs(a.astype(np.float64) - ref) / np.spacing(
        np.maximum(np.abs(ref), np.finfo(np.float32).tiny)).astype(np.float64)


def test_tanh32_within_2_ulp():
    """tanh32_inplace (float32 arithmetic) against tanh rounded to float32: <= 2 ulp on
    normal, wide and tiny arguments; the check fails for a 1e-6 relative perturbation."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=200_000) * 3, np.linspace(-25, 25, 100_001),
                        rng.normal(size=20_000) * 1e-4,
                        [1e-30, -1e-45, 9.0, 9.01, 9.5, 10.0, 700.0, -3e38]]).astype(np.float32)
    y = x.copy()
    tanh32_inplace(y)
    ref = np.tanh(x.astype(np.float64)).astype(np.float32)
    assert y.dtype == np.float32
    assert _ulps32(y, ref).max() <= 2.0
    assert _ulps32(y * np.float32(1 + 1e-6), ref).max() > 2.0
    s = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype=np.float32)
    tanh32_inplace(s)
    assert s[0] == 0 and not np.signbit(s[0]) and s[1] == 0 and np.signbit(s[1])
    np.testing.assert_array_equal(s[2:4], [1.0, -1.0])
    assert np.isnan(s[4])


def _f32(*arrays):
    return [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]


def _close(ours, ref, k=8):
    assert ours.dtype == np.float32
    assert_allclose_scaled(ours, ref, k * EPS32, k * EPS32, floor=1e-30)


@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("nin,nout,sc,act", [(25, 50, 2, 1), (50, 100, 2, 1), (240, 1, 0, 0),
                                             (25, 50, 2, 4), (50, 50, 1, 5), (8, 8, 1, 3),
                                             (25, 50, 2, 6), (8, 8, 1, 7)])
def test_dense_kernels_float32(nin, nout, sc, act, serial):
    """dense_act_forward/backward in float32 against their NumPy twins in float32."""
    rng = np.random.default_rng(nin + nout)
    B = 37
    x, z, b, idt, dy = _f32(rng.normal(size=(B, nin)), rng.normal(size=(B, nout)) * 2,
                            rng.normal(size=nout), rng.normal(size=nout),
                            rng.normal(size=(B, nout)))
    fwd = kd.dense_act_forward.serial if serial else kd.dense_act_forward
    bwd = kd.dense_act_backward.serial if serial else kd.dense_act_backward
    z1, z2 = z.copy(), z.copy()
    y1, y2 = np.empty_like(z), np.empty_like(z)
    fwd(z1, b, idt, x, sc, act, y1)
    kd.dense_act_forward_ref(z2, b, idt, x, sc, act, y2)
    _close(z1, z2)
    _close(y1, y2)
    outs = []
    for f in (bwd, kd.dense_act_backward_ref):
        dz, dxres = np.empty_like(z), np.zeros((B, nin), np.float32)
        f(dy, np.empty((0, 0), np.float32), z2, idt, sc, act, dz, dxres)
        outs.append((dz, dxres))
    _close(*[o[0] for o in outs])
    _close(*[o[1] for o in outs])


@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("nin,M1,sc,act", [(50, 100, 2, 1), (8, 8, 1, 1), (3, 5, 0, 0),
                                            (8, 8, 1, 2), (50, 100, 2, 4), (8, 8, 1, 7)])
def test_embed_T_kernels_float32(nin, M1, sc, act, serial):
    """embed_T_forward/backward in float32 (G, dG and the M1 sums in float32) against
    their NumPy twins in float32."""
    rng = np.random.default_rng(nin + M1)
    na = 7
    ptr = np.concatenate([[0], np.cumsum(rng.integers(0, 30, size=na))]).astype(np.int64)
    P = int(ptr[-1])
    x, z, R, b, idt, T0, dT = _f32(rng.normal(size=(P, nin)), rng.normal(size=(P, M1)),
                                   rng.normal(size=(P, 4)), rng.normal(size=M1),
                                   rng.normal(size=M1), rng.normal(size=(na, 4, M1)),
                                   rng.normal(size=(na, M1, 4)))
    fwd = ks.embed_T_forward.serial if serial else ks.embed_T_forward
    bwd = ks.embed_T_backward.serial if serial else ks.embed_T_backward
    zr, Tr, zz, T = z.copy(), T0.copy(), z.copy(), T0.copy()
    ks.embed_T_forward_ref(zr, b, idt, x, sc, act, R, ptr, Tr)
    fwd(zz, b, idt, x, sc, act, R, ptr, T)
    _close(zz, zr)
    _close(T, Tr, 64)
    outs = []
    for f in (bwd, ks.embed_T_backward_ref):
        o = [np.empty((P, M1), np.float32), np.zeros((P, nin), np.float32),
             np.empty((P, 4), np.float32)]
        f(zr, x, idt, sc, act, R, ptr, dT, *o)
        outs.append(o)
    for o, r, k in zip(*outs, (64, 64, 64)):
        _close(o, r, k)


def _frames():
    m = make_molecule(natoms=9, ntypes=3, seed=14)
    c = make_crystal(seed=2, natoms=8, side=4.2)
    return [("molecule", m.coord, m.atype, None), ("crystal", c.coord, c.atype, c.box)]


def _assert_float32_close(out, ref, tol=4e-6):
    for k in ("forces", "virial", "atom_energy", "atom_virial"):
        assert out[k].dtype == np.float32, k
        scale = float(np.abs(ref[k]).max())
        err = float(np.abs(out[k].astype(np.float64) - ref[k]).max())
        assert err <= tol * scale, (k, err / scale)
    n = out["forces"].shape[1]
    assert np.abs(out["energy"] - ref["energy"]).max() / n <= tol * np.abs(ref["atom_energy"]).max()


@pytest.mark.parametrize("mode", ["blocks", "kernels"])
@pytest.mark.parametrize("one_side", [False, True])
def test_float32_frames_against_float64_and_float32_references(one_side, mode, monkeypatch):
    """float32 on the numba path, no fallback warning, against the float64 reference and
    the float32 NumPy reference (tolerances in the module docstring)."""
    model = demo_model(config(one_side=one_side), seed=15)
    monkeypatch.setenv("SYMREF_NUMBA_MODE", mode)
    for name, coord, atype, box in _frames():
        ref64 = model.evaluate(coord, atype, box, backend="numpy")
        ref32 = model.evaluate(coord, atype, box, backend="numpy", precision="float32")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = model.evaluate(coord, atype, box, precision="float32")
        _assert_float32_close(out, ref64)
        _assert_float32_close(out, {k: v.astype(np.float64) for k, v in ref32.items()})
        assert np.abs(out["forces"] - ref64["forces"]).max() > 0  # it did run in float32


def test_float32_frames_with_non_tanh_activations():
    """softplus embeddings and sigmoid fitting nets (computed in float64 inside the float32
    kernels, rounded once): float32 numba within the same tolerances of the references."""
    cfg = config(activation_function="softplus")
    cfg["fitting_net"]["activation_function"] = "sigmoid"
    model = demo_model(cfg, seed=15)
    for name, coord, atype, box in _frames():
        ref64 = model.evaluate(coord, atype, box, backend="numpy")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = model.evaluate(coord, atype, box, precision="float32")
        _assert_float32_close(out, ref64)


@pytest.mark.data
def test_float32_water_frame_example_model_size(water_frame):
    """192 water atoms, deepmd-kit's example model size: float32 numba forces (and the rest)
    within 4e-6 of the largest float64 numba entry (the issue's target: 1e-4)."""
    from symref.synthetic import EXAMPLE_CONFIG

    coord, atype, box, _ = water_frame
    model = demo_model(EXAMPLE_CONFIG, seed=1)
    ref = model.evaluate(coord, atype, box)
    out = model.evaluate(coord, atype, box, precision="float32")
    _assert_float32_close(out, ref)


def test_compressed_float32_falls_back_with_warning():
    """Compressed models stay float64-only on the numba path: float32 runs the reference,
    with a warning naming the reason."""
    from test_fastpath import compressed

    s = make_molecule(natoms=9, ntypes=3, seed=14)
    model = compressed(config(), 3, s.coord)
    with pytest.warns(RuntimeWarning, match="float64 only"):
        out = model.evaluate(s.coord, s.atype, precision="float32")
    ref = model.evaluate(s.coord, s.atype, precision="float32", backend="numpy")
    np.testing.assert_array_equal(out["forces"], ref["forces"])
