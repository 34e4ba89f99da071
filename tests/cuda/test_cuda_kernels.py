"""Every CUDA kernel (numba-cuda, run on the simulator or a GPU) against its NumPy twin.

Each kernel gets the inputs the NumPy-twin pipeline of a real frame produces
(tests/cuda/cuda_cases.py) and must reproduce the twin's output: float64 to
1e-12 (relative to max(1, |ref|)), float32 to 2e-5.  The twins themselves are
checked against the reference DeepPot._evaluate_frame.  Collected only when
NUMBA_ENABLE_CUDASIM=1 was set before numba was imported, or on a real GPU
(tests/conftest.py); tests/test_cuda_sim.py runs this directory that way.
Helpers: tests/cuda/cuda_cases.py (importable: pytest puts tests/cuda on sys.path).
"""
import numpy as np
import pytest
from cuda_support import cuda_kernels_runnable

if not cuda_kernels_runnable():  # a file named on the command line (tests/conftest.py)
    pytest.skip("needs NUMBA_ENABLE_CUDASIM=1 (set before numba is imported) or a CUDA GPU",
                allow_module_level=True)

from cuda_cases import assert_close, frame, small_model, twin_pipeline
from symref.fast.kernels import cuda_se_e2_a as kc
from symref.fast.kernels.cuda_se_e2_a_device import NetPack

DTYPES = [np.float64, np.float32]
# (model keywords, frame kind): periodic and not, one- and two-side, with every exclusion
CASES = {
    "crystal/two_side": (dict(one_side=False), "crystal"),
    "molecule/one_side+excl": (dict(one_side=True, exclude_types=[[0, 1]]), "molecule"),
}


def _model(kw):
    m = small_model(**kw)
    if "exclude_types" in kw:
        m.pair_exclude_types = [(1, 1)]
        m.atom_exclude_types = [1]
    return m


@pytest.fixture(scope="module", params=[(c, dt) for c in CASES for dt in DTYPES],
                ids=lambda p: f"{p[0]}-{np.dtype(p[1]).name}")
def case(request):
    name, dtype = request.param
    kw, kind = CASES[name]
    coord, atype, box = frame(kind)
    c = twin_pipeline(_model(kw), coord, atype, box, dtype)
    c["frame"] = (coord, atype, box)
    return c


def test_twin_pipeline_is_the_reference(case):
    """The twins chained together give the reference model's energies, forces, virials."""
    m = case["model"]
    n = len(case["atype"])
    assert (case["nlist"] >= 0).sum() > n  # real neighbours
    if m.descriptor.exclude_types:
        assert ((case["keep"] == 0) & (case["nlist"] >= 0)).any()  # an excluded neighbour
    ref = m._evaluate_frame(*case["frame"], dtype=case["dtype"], truncate=False, frame=0)
    assert_close(case["E"], ref["atom_energy"], case["dtype"], "atom_energy")
    assert_close(case["F"], ref["forces"], case["dtype"], "forces")
    assert_close(case["W"], ref["atom_virial"], case["dtype"], "atom_virial")


def test_env_mat(case):
    c = case
    R = np.full_like(c["R"], np.nan)
    kc.env_mat(c["rij"], c["nlist"], c["atype"], c["davg"], c["dstd"], c["rcut"], c["rcut_smth"],
               c["protection"], R)
    assert_close(R, c["R"], c["dtype"], "R")


@pytest.mark.parametrize("protection", [0.0, 0.3])
def test_env_mat_protection_and_backward(case, protection):
    """env_protection > 0 changes 1/r into 1/(r + p) in both directions."""
    c = case
    R, R_ref = np.empty_like(c["R"]), np.empty_like(c["R"])
    args = (c["rij"], c["nlist"], c["atype"], c["davg"], c["dstd"], c["rcut"], c["rcut_smth"],
            protection)
    kc.env_mat(*args, R)
    kc.env_mat_ref(*args, R_ref)
    assert_close(R, R_ref, c["dtype"], "R")
    bargs = (c["rij"], R_ref, c["nlist"], c["keep"], c["atype"], c["slot_type"], c["emb_index"],
             c["emb"], c["dstd"], c["rcut"], c["rcut_smth"], protection, c["dT"])
    g, g_ref = np.full_like(c["g"], np.nan), np.empty_like(c["g"])
    kc.embed_backward(*bargs, g)
    kc.embed_backward_ref(*bargs, g_ref)
    assert_close(g, g_ref, c["dtype"], "g")


def test_embed_T_forward(case):
    c = case
    T = np.full_like(c["T"], np.nan)
    kc.embed_T_forward(c["R"], c["keep"], c["atype"], c["slot_type"], c["emb_index"], c["emb"],
                       c["nnei"], T)
    assert_close(T, c["T"], c["dtype"], "T")


def test_descriptor_forward_backward(case):
    c = case
    D, dT = np.full_like(c["D"], np.nan), np.full_like(c["dT"], np.nan)
    kc.descriptor_forward(c["T"], c["M2"], D)
    kc.descriptor_backward(c["dD"], c["T"], c["M2"], c["nnei"], dT)
    assert_close(D, c["D"], c["dtype"], "D")
    assert_close(dT, c["dT"], c["dtype"], "dT")


def test_fitting(case):
    c = case
    E, dD = np.full_like(c["E"], np.nan), np.full_like(c["dD"], np.nan)
    kc.fitting(c["D"], c["atype"], c["fit"], c["bias_atom_e"], c["out_bias"], c["fit_on"],
               c["alive"], E, dD)
    assert_close(E, c["E"], c["dtype"], "E")
    assert_close(dD, c["dD"], c["dtype"], "dD")
    assert np.abs(c["dD"]).max() > 0


def test_fitting_excluded_types():
    """fit_on = 0: energy out_bias, no gradient; alive = 0: zero energy, no gradient."""
    c = twin_pipeline(small_model(seed=2), *frame("molecule", seed=3))
    for fit_on, alive in (([1, 0], [1, 1]), ([1, 1], [0, 1]), ([0, 1], [1, 0])):
        fo, al = np.array(fit_on, np.int8), np.array(alive, np.int8)
        outs = []
        for f in (kc.fitting, kc.fitting_ref):
            E, dD = np.full_like(c["E"], np.nan), np.full_like(c["dD"], np.nan)
            f(c["D"], c["atype"], c["fit"], c["bias_atom_e"], c["out_bias"], fo, al, E, dD)
            outs.append((E, dD))
        assert_close(outs[0][0], outs[1][0], np.float64, "E")
        assert_close(outs[0][1], outs[1][1], np.float64, "dD")


def test_embed_backward(case):
    c = case
    g = np.full_like(c["g"], np.nan)
    kc.embed_backward(c["rij"], c["R"], c["nlist"], c["keep"], c["atype"], c["slot_type"],
                      c["emb_index"], c["emb"], c["dstd"], c["rcut"], c["rcut_smth"],
                      c["protection"], c["dT"], g)
    assert_close(g, c["g"], c["dtype"], "g")
    pad = (c["nlist"] < 0) | (c["keep"] == 0)
    assert np.all(g[pad] == 0.0)


def test_forces_virial(case):
    c = case
    F, W = np.full_like(c["F"], np.nan), np.full_like(c["W"], np.nan)
    kc.forces_virial(c["g"], c["rij"], c["nlist"], c["rev_ptr"], c["rev_idx"], F, W)
    assert_close(F, c["F"], c["dtype"], "F")
    assert_close(W, c["W"], c["dtype"], "W")


@pytest.mark.parametrize("resnet_dt,neuron", [(True, (2, 4, 8)), (False, (3, 3, 6)), (True, (5,))])
def test_netpack_round_trip_and_embedding_shortcuts(resnet_dt, neuron):
    """Packing keeps every layer (shortcut x, [x, x], none; with and without timestep)
    and the embedding kernels follow deepmd-kit's residual rule for each."""
    m = small_model(seed=4, neuron=neuron, resnet_dt=resnet_dt, one_side=True)
    pk = NetPack.pack(m.descriptor.embeddings, np.float64, input_in_buffer=True)
    for net, back in zip(m.descriptor.embeddings, pk.unpack()):
        assert [ly.shortcut for ly in net] == [ly.shortcut for ly in back]
        for a, b in zip(net, back):
            np.testing.assert_array_equal(a.w, b.w)
            assert (a.idt is None) == (b.idt is None)
    c = twin_pipeline(m, *frame("crystal", seed=5))
    T = np.empty_like(c["T"])
    kc.embed_T_forward(c["R"], c["keep"], c["atype"], c["slot_type"], c["emb_index"], c["emb"],
                       c["nnei"], T)
    assert_close(T, c["T"], np.float64, "T")
    g = np.empty_like(c["g"])
    kc.embed_backward(c["rij"], c["R"], c["nlist"], c["keep"], c["atype"], c["slot_type"],
                      c["emb_index"], c["emb"], c["dstd"], c["rcut"], c["rcut_smth"],
                      c["protection"], c["dT"], g)
    assert_close(g, c["g"], np.float64, "g")


def test_reverse_index():
    nlist = np.array([[1, 2, -1], [0, 0, 2], [-1, -1, -1]])
    rev_ptr, rev_idx = kc.reverse_index(nlist, 3)
    np.testing.assert_array_equal(rev_ptr, [0, 2, 3, 5])
    np.testing.assert_array_equal(rev_idx, [3, 4, 0, 1, 5])
