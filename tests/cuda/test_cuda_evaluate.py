"""DeepPot.evaluate(backend="cuda") against backend="numpy" (the reference).

float64: energies to 1e-12 relative, forces, virials and per-atom virials to
1e-10 relative (to the largest entry), as the CPU fast path.  float32 (a
well-conditioned case): forces within 1e-5 of the float64 reference, relative
to the largest force.  Tiny systems (the simulator is slow); the ``gpu`` test
needs a real GPU.
"""
import warnings

import numpy as np
import pytest
from cuda_support import cuda_kernels_runnable

if not cuda_kernels_runnable():  # a file named on the command line (tests/conftest.py)
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (set before numba is imported) or a CUDA GPU",
                allow_module_level=True)

from cuda_cases import config, frame, max_rel, small_model
from symref.fast import cuda as cudapath
from symref.io.data import make_molecule
from symref.model.build import demo_model

TOL = {"energy": 1e-12, "atom_energy": 1e-12, "forces": 1e-10, "virial": 1e-10,
       "atom_virial": 1e-10}


def assert_matches(model, coord, atype, box=None, **kw):
    ref = model.evaluate(coord, atype, box, backend="numpy", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        out = model.evaluate(coord, atype, box, backend="cuda", **kw)
    errs = {}
    for k, tol in TOL.items():
        assert out[k].shape == ref[k].shape and out[k].dtype == ref[k].dtype, k
        errs[k] = max_rel(out[k], ref[k])
        assert errs[k] <= tol, f"{k}: relative deviation {errs[k]:.2e} > {tol:.0e}"
    print("max relative deviations:", {k: f"{v:.1e}" for k, v in errs.items()})
    return ref, out


@pytest.mark.parametrize("one_side", [True, False])
def test_periodic_small_skewed_cell(one_side):
    coord, atype, box = frame("crystal", seed=1)
    ref, _ = assert_matches(small_model(seed=2, one_side=one_side), coord, atype, box)
    assert np.abs(ref["forces"]).max() > 1e-3


def test_molecule_with_every_exclusion():
    coord, atype, _ = frame("molecule", seed=2)
    cfg = config(one_side=False, exclude_types=[[0, 1]])
    cfg["pair_exclude_types"] = [[1, 1]]
    cfg["atom_exclude_types"] = [1]
    m = demo_model(cfg, seed=3)
    assert_matches(m, coord, atype)
    m.atom_exclude_types = []
    m.fitting.exclude_types = [0]
    assert_matches(m, coord, atype)


def test_three_types_statistics_varying_per_slot_and_protection():
    """Statistics that vary inside a type group (the CPU fast path falls back to the
    reference for those; the GPU path computes every slot) and env_protection."""
    s = make_molecule(natoms=8, ntypes=3, seed=4)
    m = small_model(seed=5, ntypes=3, sel=(4, 4, 4), rcut=3.0)
    m.descriptor.davg[:, :, 0] += 0.01 * np.arange(m.descriptor.nnei)
    m.descriptor.env_protection = 0.2
    assert_matches(m, s.coord, s.atype)


def test_frames_truncation_and_sel_error():
    coord, atype, box = frame("crystal", seed=6)
    rng = np.random.default_rng(0)
    coords = coord[None] + rng.normal(scale=0.03, size=(2,) + coord.shape)
    m = small_model(seed=7)
    assert_matches(m, coords, atype, box)
    small = small_model(seed=7, sel=(2, 2))
    msgs = []
    for backend in ("numpy", "cuda"):
        with pytest.raises(ValueError, match="neighbours of type") as e:
            small.evaluate(coord, atype, box, backend=backend)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]
    assert_matches(small, coord, atype, box, truncate=True)


def test_isolated_atom():
    coord, atype, _ = frame("molecule", seed=8)
    coord = coord.copy()
    coord[3] += 30.0
    _, out = assert_matches(small_model(seed=9), coord, atype)
    assert np.all(out["forces"][0, 3] == 0.0)


def test_float32_forces_close_to_float64():
    """float32 on the device: forces within 1e-5 of the float64 reference (relative to
    the largest force) on a well-conditioned frame; the float32 reference agrees too."""
    coord, atype, box = frame("crystal", seed=10)
    m = small_model(seed=11)
    ref64 = m.evaluate(coord, atype, box, backend="numpy")
    ref32 = m.evaluate(coord, atype, box, backend="numpy", precision="float32")
    out = m.evaluate(coord, atype, box, backend="cuda", precision="float32")
    assert out["forces"].dtype == np.float32
    errs = {k: max_rel(out[k], ref64[k]) for k in ("energy", "forces", "virial")}
    print("float32 vs float64 reference:", {k: f"{v:.1e}" for k, v in errs.items()},
          "float32 reference vs float64:", f"{max_rel(ref32['forces'], ref64['forces']):.1e}")
    assert errs["forces"] <= 1e-5
    assert errs["virial"] <= 1e-5
    assert errs["energy"] <= 1e-6
    assert max_rel(out["forces"], ref32["forces"]) <= 1e-5


def test_fallback_with_warning(monkeypatch):
    coord, atype, _ = frame("molecule", seed=12)
    m = small_model(seed=13)
    monkeypatch.setattr(cudapath, "unsupported_reason", lambda model: "a test reason")
    with pytest.warns(RuntimeWarning, match="a test reason.*NumPy reference"):
        out = m.evaluate(coord, atype, backend="cuda")
    ref = m.evaluate(coord, atype, backend="numpy")
    np.testing.assert_array_equal(out["forces"], ref["forces"])


def test_unsupported_reason():
    m = small_model(seed=14)
    assert cudapath.unsupported_reason(m) is None
    tensor_cfg = config()
    tensor_cfg["fitting_net"]["type"] = "dipole"
    assert "DeepPot" in cudapath.unsupported_reason(demo_model(tensor_cfg, seed=1))


def _real_gpu() -> bool:
    import numba
    from numba import cuda

    return not numba.config.ENABLE_CUDASIM and cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _real_gpu(), reason="needs a real CUDA GPU (not the simulator)")
def test_water_example_model_on_gpu():
    """deepmd-kit's water example model size on 192 water-like atoms: float64 as the
    numba CPU path to 1e-10, float32 forces within 1e-5 of float64."""
    from symref.synthetic import EXAMPLE_CONFIG, water_box

    c, atype, b = water_box(1, seed=0)
    coord, box = c[0], b[0]
    m = demo_model(EXAMPLE_CONFIG, seed=1)
    ref = m.evaluate(coord, atype, box, backend="numba")
    out = m.evaluate(coord, atype, box, backend="cuda")
    for k in TOL:
        assert max_rel(out[k], ref[k]) <= TOL[k], k
    out32 = m.evaluate(coord, atype, box, backend="cuda", precision="float32")
    assert max_rel(out32["forces"], ref["forces"]) <= 1e-5
