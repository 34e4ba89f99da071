"""The GPU path with every activation: device functions and whole evaluations.

The activation device functions (one per activation, dispatched on the integer codes of
the numba CPU kernels, :data:`symref.fast.kernels.activations.ACT_CODES`) against the
reference table (:mod:`symref.reference.activation`) to ``atol + |ref|·eps(dtype)``;
``DeepPot.evaluate(backend="cuda")`` of models whose embedding and fitting nets use each
activation against ``backend="numpy"`` (no fallback).  Collected only under
NUMBA_ENABLE_CUDASIM=1 or on a GPU (tests/test_cuda_sim.py runs this directory so).
"""
import warnings

import numpy as np
import pytest
from cuda_support import cuda_kernels_runnable

if not cuda_kernels_runnable():  # a file named on the command line (tests/conftest.py)
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (set before numba is imported) or a CUDA GPU",
                allow_module_level=True)

from cuda_cases import config, frame, max_rel, twin_pipeline
from symref.fast import cuda as cudapath
from symref.fast.kernels import cuda_se_e2_a as kc
from symref.fast.kernels.activations import ACT_CODES
from symref.model.build import demo_model

NAMES = ["relu", "relu6", "softplus", "sigmoid", "gelu", "silu", "silut"]
TOL = {"energy": 1e-12, "atom_energy": 1e-12, "forces": 1e-10, "virial": 1e-10,
       "atom_virial": 1e-10}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", NAMES)
def test_activation_device_functions_match_the_reference(name, dtype):
    """phi and phi' of each device function equal the reference table's at the same
    (dtype-rounded) z to 2·eps + 8·eps·|ref| (eps of the kernel's dtype: float32 kernels
    compute in float32), kinks (0, 6) and both tails included; a 1e-13 (float64) or 1e-5
    (float32) relative change of the result breaks the bound."""
    z = np.concatenate([np.linspace(-30, 30, 241), [0.0, -0.0, 6.0, -800.0, 800.0]])
    z = z.astype(dtype)
    ours, ref = np.full((2, z.size), np.nan, dtype), np.empty((2, z.size))
    kc.activation_values(z, ACT_CODES[name], ours)
    kc.activation_values_ref(z, ACT_CODES[name], ref)
    eps = np.finfo(dtype).eps
    bound = 2 * eps + 8 * eps * np.abs(ref)
    assert np.all(np.abs(ours - ref) <= bound), (name, np.max(np.abs(ours - ref) - bound))
    bump = 1e-13 if dtype == np.float64 else 1e-5
    assert not np.all(np.abs(ours * (1 + bump) - ref) <= bound)


@pytest.mark.parametrize("name", NAMES + ["gelu_tf", "custom_silu"])
def test_evaluate_every_activation_equals_the_reference(name):
    """A model whose descriptor and fitting nets use ``name``, on a periodic skewed cell:
    float64 ``backend="cuda"`` equals ``backend="numpy"`` (energies 1e-12, forces and
    virials 1e-10, relative to the largest entry), with no fallback warning; the kernels'
    chained NumPy twins equal the reference as well."""
    coord, atype, box = frame("crystal", seed=1)
    cfg = config(activation_function=name)
    cfg["fitting_net"]["activation_function"] = name
    m = demo_model(cfg, seed=2)
    assert cudapath.unsupported_reason(m) is None
    ref = m.evaluate(coord, atype, box, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback
        out = m.evaluate(coord, atype, box, backend="cuda")
    for k, tol in TOL.items():
        assert max_rel(out[k], ref[k]) <= tol, (k, max_rel(out[k], ref[k]))
    assert np.abs(ref["forces"]).max() > 1e-4
    twins = twin_pipeline(m, coord, atype, box)
    assert max_rel(twins["F"], ref["forces"][0] if ref["forces"].ndim == 3
                   else ref["forces"]) <= 1e-10


@pytest.mark.parametrize("name", ["softplus", "gelu"])
def test_float32_every_activation_close_to_float64(name):
    """float32 on the GPU path with a non-tanh activation (computed in float32): forces
    within 1e-5 of the float64 reference, relative to the largest force."""
    coord, atype, box = frame("crystal", seed=3)
    cfg = config(activation_function=name)
    cfg["fitting_net"]["activation_function"] = name
    m = demo_model(cfg, seed=4)
    ref = m.evaluate(coord, atype, box, backend="numpy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = m.evaluate(coord, atype, box, backend="cuda", precision="float32")
    assert max_rel(out["forces"], ref["forces"]) <= 1e-5


def test_activation_without_a_code_falls_back_by_name():
    """silut with a threshold other than deepmd-kit's default 3 (``silut:2.0``) has no
    kernel code: ``unsupported_reason`` names it, ``backend="cuda"`` falls back to the
    reference with a warning (same numbers), and the packer refuses it by name."""
    from symref.fast.kernels.cuda_se_e2_a_device import NetPack

    cfg = config(activation_function="silut:2.0")
    m = demo_model(cfg, seed=5)
    assert "activation 'silut:2.0' is not implemented in the GPU path" in \
        cudapath.unsupported_reason(m)
    coord, atype, box = frame("crystal", seed=1)
    with pytest.warns(RuntimeWarning, match="silut:2.0"):
        out = m.evaluate(coord, atype, box, backend="cuda")
    ref = m.evaluate(coord, atype, box, backend="numpy")
    np.testing.assert_array_equal(out["forces"], ref["forces"])
    with pytest.raises(ValueError, match="activation 'silut:2.0' is not implemented in the GPU"):
        NetPack.pack(m.descriptor.embeddings, np.float64, input_in_buffer=True)
