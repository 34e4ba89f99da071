"""The fast path (``backend="numba"``) against the NumPy reference, on every kind of input.

Targets: energies to 1e-12 relative, forces, virials and per-atom virials to
1e-10 relative (to the largest entry); same errors as the reference on bad
input; results independent of the execution mode and the number of threads.
Compressed (tabulated) models: everything to 1e-12 relative, with no fallback warning
(``type_one_side`` both ways, type-pair exclusions, an empty table, neighbours beyond
the table's end with the reference's warning).
"""
import copy
import warnings

import numba
import numpy as np
import pytest
from tolerance import assert_allclose_scaled

from symref.fast import cpu as fastpath
from symref.io.compress import compress_model, min_neighbor_distance
from symref.io.data import make_crystal, make_molecule
from symref.model.build import demo_model
from symref.synthetic import example_config

TOL = {"energy": 1e-12, "atom_energy": 1e-12, "forces": 1e-10, "virial": 1e-10,
       "atom_virial": 1e-10}
TOL_COMPRESSED = dict.fromkeys(TOL, 1e-12)  # the brief of issue 21


def config(ntypes=3, sel=(40, 40, 40), one_side=False, rcut=4.0, **desc):
    d = {"type": "se_e2_a", "rcut": rcut, "rcut_smth": 0.5, "sel": list(sel),
         "neuron": [8, 16, 32], "axis_neuron": 4, "resnet_dt": True, "type_one_side": one_side}
    d.update(desc)
    return {"type_map": ["C", "H", "O"][:ntypes], "descriptor": d,
            "fitting_net": {"neuron": [24, 24], "resnet_dt": True}}


def assert_matches(model, coord, atype, box=None, tol=TOL, **kw):
    """numba against numpy to ``tol`` (relative to the largest entry); the numba call
    raises on any warning (no fallback)."""
    ref = model.evaluate(coord, atype, box, backend="numpy", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = model.evaluate(coord, atype, box, backend="numba", **kw)
    for k, tol in tol.items():
        scale = max(np.abs(ref[k]).max(), 1e-300)
        err = np.abs(out[k] - ref[k]).max() / scale
        assert err <= tol, f"{k}: relative deviation {err:.2e} > {tol:.0e}"
    return ref, out


@pytest.mark.parametrize("one_side", [True, False])
def test_water_frame_example_model_size(water_frame, one_side):
    coord, atype, box, _ = water_frame
    cfg = {"type_map": ["O", "H"],
           "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                          "neuron": [25, 50, 100], "axis_neuron": 16, "resnet_dt": False,
                          "type_one_side": one_side},
           "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True}}
    ref, _ = assert_matches(demo_model(cfg, seed=3), coord, atype, box)
    assert np.abs(ref["forces"]).max() > 1e-3  # a model with non-trivial forces


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("one_side", [True, False])
def test_molecules_three_types_with_exclusions(one_side, compress):
    s = make_molecule(natoms=14, ntypes=3, seed=2)
    cfg = config(one_side=one_side, exclude_types=[[0, 2]])
    cfg["pair_exclude_types"] = [[1, 1]]
    cfg["atom_exclude_types"] = [2]
    cfg["fitting_net"]["exclude_types"] = [1]
    if compress:
        assert_matches(compressed(cfg, 4, s.coord), s.coord, s.atype, tol=TOL_COMPRESSED)
    else:
        assert_matches(demo_model(cfg, seed=4), s.coord, s.atype)


def test_skewed_small_cell_many_images_and_atoms_far_outside():
    s = make_crystal(seed=1, skew=0.45, natoms=6, side=3.1)
    model = demo_model(config(ntypes=2, sel=(120, 120)), seed=5)
    coord = s.coord.copy()
    coord[0, 0] += 50 * s.box[0, 0] - 37 * s.box[0, 2]  # far outside the cell
    ref, out = assert_matches(model, coord, s.atype, s.box)
    ref2 = model.evaluate(s.coord, s.atype, s.box, backend="numba")
    np.testing.assert_allclose(out["energy"], ref2["energy"], rtol=1e-12)


def test_isolated_atom_and_missing_type():
    s = make_molecule(natoms=8, ntypes=2, seed=6)
    coord = s.coord.copy()
    coord[0, 3] += 40.0  # atom 3: no neighbours
    model = demo_model(config(), seed=7)  # 3 types, the frame has only types 0 and 1
    ref, out = assert_matches(model, coord, s.atype)
    assert np.all(out["forces"][0, 3] == 0.0)


def test_single_atom_and_multiple_frames():
    model = demo_model(config(), seed=8)
    assert_matches(model, np.zeros((1, 1, 3)), np.array([1]))
    s = make_molecule(natoms=10, ntypes=3, seed=9)
    rng = np.random.default_rng(0)
    coords = s.coord + rng.normal(scale=0.05, size=(3,) + s.coord.shape[1:])
    assert_matches(model, coords, s.atype)


def test_sel_exceeded_same_error_as_reference():
    s = make_molecule(natoms=12, ntypes=3, seed=10)
    model = demo_model(config(sel=(1, 1, 1)), seed=11)
    msgs = []
    for backend in ("numpy", "numba"):
        with pytest.raises(ValueError, match="neighbours of type") as e:
            model.evaluate(s.coord, s.atype, backend=backend)
        msgs.append(str(e.value))
    assert msgs[0] == msgs[1]
    assert_matches(model, s.coord, s.atype, truncate=True)


def test_unsupported_statistics_fall_back_with_warning():
    s = make_molecule(natoms=9, ntypes=3, seed=12)
    model = demo_model(config(), seed=13)
    model.descriptor.davg[0, 5, 0] += 0.01  # varies inside the type-0 group
    assert "varies" in fastpath.unsupported_reason(model)
    with pytest.warns(RuntimeWarning, match="NumPy reference"):
        out = model.evaluate(s.coord, s.atype, backend="numba")
    ref = model.evaluate(s.coord, s.atype, backend="numpy")
    np.testing.assert_array_equal(out["forces"], ref["forces"])


def test_bad_backend_is_rejected():
    """(float32 on the numba path: tests/test_fast_float32.py.)"""
    s = make_molecule(natoms=9, ntypes=3, seed=14)
    model = demo_model(config(), seed=15)
    with pytest.raises(ValueError, match="backend"):
        model.evaluate(s.coord, s.atype, backend="torch")


@pytest.mark.parametrize("compress", [False, True])
def test_modes_and_thread_counts_agree(compress):
    s = make_crystal(seed=2, natoms=8, side=4.2)
    if compress:
        model = compressed(config(ntypes=2, sel=(80, 80)), 16, s.coord, s.box)
    else:
        model = demo_model(config(ntypes=2, sel=(80, 80)), seed=16)
    c, a, b = s.coord[0], s.atype, s.box[0]
    outs = []
    nthreads = numba.get_num_threads()
    try:
        for threads in sorted({1, nthreads}):
            numba.set_num_threads(threads)
            for mode in ("blocks", "kernels"):
                outs.append(fastpath.evaluate_frame(model, c, a, b, mode=mode, block_pairs=64))
    finally:
        numba.set_num_threads(nthreads)
    for o in outs[1:]:
        for k in TOL:
            assert_allclose_scaled(o[k], outs[0][k], 1e-12, 1e-12)


@pytest.mark.parametrize("neuron", [[6], [4, 8]])
def test_short_embedding_nets(neuron):
    """One- and two-layer embedding nets (the first and last layer are fused kernels)."""
    s = make_molecule(natoms=11, ntypes=3, seed=17)
    model = demo_model(config(neuron=neuron, axis_neuron=2), seed=18)
    assert_matches(model, s.coord, s.atype)


def _images(coord, atype, cell, margin):
    """The periodic images of a frame within ``margin`` Å of its cell (a fractional test
    on the cell's heights), with the index of the atom each one is an image of."""
    frac_margin = margin * np.linalg.norm(np.linalg.inv(cell), axis=0)  # per axis
    k = int(np.ceil(frac_margin.max())) + 1
    r = range(-k, k + 1)
    shifts = np.array([[a, b, c] for a in r for b in r for c in r if (a, b, c) != (0, 0, 0)])
    x = (coord[None] + (shifts @ cell)[:, None]).reshape(-1, 3)
    idx = np.tile(np.arange(len(coord)), len(shifts))
    u = x @ np.linalg.inv(cell)
    keep = np.all((u > -frac_margin) & (u < 1 + frac_margin), axis=1)
    return x[keep], atype[idx[keep]], idx[keep]


@pytest.mark.parametrize("fold", [False, True])
def test_cluster_of_own_atoms_and_images_matches_periodic(fold):
    """A periodic frame evaluated as a cluster (own atoms + images out to 2 rcut, no box),
    as symref.lammps does on each rank: with ``ncentre`` = own atoms + the images within
    rcut of them (or, with ``fold``, own atoms only and image pairs folded back), the own
    atoms' energies, forces and the own centres' virial equal the periodic evaluation."""
    model = demo_model(config(), seed=2)
    c = make_crystal(seed=1, natoms=8, side=4.2)
    coord, atype, cell = c.coord[0], c.atype, c.box[0].reshape(3, 3)
    coord = coord % np.diag(cell)  # own atoms inside the cell, like a LAMMPS rank's
    ref = model.evaluate(coord, atype, cell, backend="numpy")
    n = len(coord)
    gx, gt, gidx = _images(coord, atype, cell, 2 * model.rcut)
    X, A = np.concatenate([coord, gx]), np.concatenate([atype, gt])
    from symref.fast.kernels.neighbors import build_pair_list

    pl = build_pair_list(X, A, None, model.rcut, model.sel)
    near = np.zeros(len(X), dtype=bool)
    near[pl.j[:pl.ptr[n]]] = True
    near[:n] = False
    if fold:
        shell = np.zeros(0, dtype=np.int64)
    else:
        shell = np.flatnonzero(near)
    rest = np.setdiff1d(np.arange(n, len(X)), shell)
    order = np.concatenate([np.arange(n), shell, rest])
    owner = np.concatenate([np.arange(n), gidx])[order]  # every image stands for an own atom
    inv = np.empty(len(X), dtype=np.int64)
    inv[order] = np.arange(len(X))
    kw = dict(fold=inv[owner]) if fold else {}
    out = fastpath.evaluate_frame(model, X[order], A[order], None, ncentre=n + len(shell),
                                  nvirial=n, **kw)
    assert np.all(out["atom_energy"][n + len(shell):] == 0)
    assert abs(out["atom_energy"][:n].sum() - ref["energy"][0]) <= 1e-12 * abs(ref["energy"][0])
    scale = np.abs(ref["forces"][0]).max()
    assert np.abs(out["forces"][:n] - ref["forces"][0]).max() <= 1e-10 * scale
    vscale = np.abs(ref["virial"][0]).max()
    assert np.abs(out["centre_virial"] - ref["virial"][0]).max() <= 1e-10 * vscale
    with pytest.raises(ValueError, match="nvirial"):
        fastpath.evaluate_frame(model, X, A, None, ncentre=n, fold=np.arange(len(X)))


def test_cluster_arguments_are_checked_before_any_work():
    """Malformed cluster arguments (symref.lammps's ncentre/nvirial/fold/pair_list) are a
    ValueError naming the argument and the expected range, from evaluate_frame and from
    both neighbour builders."""
    from symref.fast.kernels.neighbors import build_pair_list
    from symref.reference.neighbors import build_neighbor_list

    model = demo_model(config(), seed=2)
    s = make_molecule(natoms=9, ntypes=3, seed=5)
    X, A, n = s.coord[0], s.atype, len(s.atype)
    other = build_pair_list(X[:5], A[:5], None, model.rcut, model.sel)
    bad = {r"ncentre must be in \[0, 9\]": dict(ncentre=10),
           r"nvirial must be in \[0, ncentre=4\]": dict(ncentre=4, nvirial=5),
           "fold must be 9 atom indices": dict(ncentre=4, nvirial=4, fold=np.arange(8)),
           "fold must be 9 atom indices ": dict(ncentre=4, nvirial=4, fold=np.full(n, n)),
           "pair_list has 5 centres, the frame 9 atoms": dict(pair_list=other)}
    for msg, kw in bad.items():
        with pytest.raises(ValueError, match=msg.strip()):
            fastpath.evaluate_frame(model, X, A, None, **kw)
    for build in (build_pair_list, build_neighbor_list):
        with pytest.raises(ValueError, match=r"ncentre must be in \[0, 9\], got -1"):
            build(X, A, None, model.rcut, model.sel, ncentre=-1)


# ------------------------------------------------------ compressed (tabulated) models
def compressed(cfg, seed, coord, box=None):
    """The model of ``cfg`` without ``resnet_dt`` (deepmd-kit's tables ignore it) and
    with random davg (so padded rows are not zero), compressed for the frames' smallest
    neighbour distance."""
    cfg = copy.deepcopy(cfg)
    cfg["descriptor"]["resnet_dt"] = False
    model = demo_model(cfg, seed=seed)
    d = model.descriptor
    rng = np.random.default_rng(seed)
    off = d.sel_offsets
    for tj in range(d.ntypes):  # constant per neighbour-type group, as deepmd-kit's
        d.davg[:, off[tj]:off[tj + 1], 0] = rng.uniform(0.0, 0.2, size=(d.ntypes, 1))
    return compress_model(model, min_neighbor_distance(coord, box))


def test_compressed_models_are_supported():
    s = make_molecule(natoms=6, ntypes=3, seed=1)
    model = compressed(config(), 1, s.coord)
    assert fastpath.unsupported_reason(model) is None
    ly = model.descriptor.embeddings[0][0]
    model.descriptor.embeddings[0][0] = copy.copy(ly)
    model.descriptor.embeddings[0][0].activation = "gelu"  # the tables replace the nets
    assert fastpath.unsupported_reason(model) is None


@pytest.mark.parametrize("one_side", [True, False])
def test_compressed_skewed_small_periodic_cell(one_side):
    s = make_crystal(seed=1, skew=0.45, natoms=6, side=3.1)
    model = compressed(config(ntypes=2, sel=(120, 120), one_side=one_side,
                              exclude_types=[[0, 1]]), 5, s.coord, s.box)
    assert_matches(model, s.coord, s.atype, s.box, tol=TOL_COMPRESSED)


@pytest.mark.parametrize("one_side", [True, False])
def test_compressed_water_frame_example_model_size(water_frame, one_side):
    coord, atype, box, _ = water_frame
    box = box.reshape(-1, 3, 3)
    model = demo_model(example_config(type_one_side=one_side), seed=3)
    model = compress_model(model, min_neighbor_distance(coord, box))
    assert_matches(model, coord, atype, box, tol=TOL_COMPRESSED)


def test_compressed_empty_table_contributes_nothing():
    """A net without a table (deepmd-kit's serializer drops it) adds nothing, padded
    slots included; the reference and the fast path agree."""
    s = make_molecule(natoms=12, ntypes=3, seed=6)
    model = compressed(config(one_side=False), 7, s.coord)
    tabs = model.descriptor.tables
    for idx in (1, 5):  # (ti, tj) = (1, 0) and (2, 1)
        tabs.data[idx] = np.zeros((0,))
        tabs.info[idx] = np.zeros((0,))
    assert_matches(model, s.coord, s.atype, tol=TOL_COMPRESSED)


def test_compressed_beyond_table_warns_like_the_reference():
    """Tables built for 3 Å with no extrapolation range and dstd scaled by 1/4 (so that
    the table ends at s = 1 or 2): closer neighbours lie beyond the table's end; both
    backends warn (the same messages) and still agree."""
    s = make_molecule(natoms=12, ntypes=2, seed=8)
    model = demo_model(config(ntypes=2, sel=(40, 40), resnet_dt=False), seed=9)
    model.descriptor.dstd = model.descriptor.dstd * 0.25
    model = compress_model(model, 3.0, extrapolate=1.0)
    msgs = {}
    for backend in ("numpy", "numba"):
        with pytest.warns(RuntimeWarning, match="beyond the table") as rec:
            out = model.evaluate(s.coord, s.atype, backend=backend)
        assert not any("NumPy reference" in str(w.message) for w in rec)
        msgs[backend] = sorted({str(w.message) for w in rec})
        msgs[backend + "_out"] = out
    assert msgs["numpy"] == msgs["numba"]
    for k, tol in TOL_COMPRESSED.items():
        ref = msgs["numpy_out"][k]
        assert np.abs(msgs["numba_out"][k] - ref).max() <= tol * np.abs(ref).max()


def test_training_a_compressed_model_still_refused():
    """The fast loss path does not take compressed models: it warns that the reference runs,
    and the reference names the problem."""
    from symref.fast import cpu_loss
    from symref.train.loss import energy_loss_and_grad

    s = make_molecule(natoms=6, ntypes=3, seed=10)
    model = compressed(config(), 11, s.coord)
    assert "compressed" in cpu_loss.unsupported_reason(model)
    with pytest.raises(ValueError, match="compressed"), \
            pytest.warns(RuntimeWarning, match="loss gradient: a compressed"):
        energy_loss_and_grad(model, s.coord, s.atype, None, np.zeros(1),
                             np.zeros_like(s.coord), backend="numba")


def test_forked_child_makes_its_own_thread_pool(tmp_path):
    """A process forked after the parent used the fast path's thread pool (as the transport
    study's process pool does with multiprocessing's "fork") gets a pool with live worker
    threads: before, it inherited the parent's pool object without its threads, and the
    first evaluation in the child waited forever."""
    import subprocess
    import sys

    from checkout import checkout_env

    script = tmp_path / "fork_pool.py"
    script.write_text(
        "import multiprocessing as mp\n"
        "from symref.fast.cpu import thread_pool\n"
        "thread_pool(2).submit(int).result()\n"
        "def child(_):\n"
        "    return thread_pool(2).submit(lambda: 42).result(timeout=30)\n"
        "if __name__ == '__main__':\n"
        "    with mp.get_context('fork').Pool(1) as p:\n"
        "        print(p.map(child, [0]))\n")
    r = subprocess.run([sys.executable, str(script)], env=checkout_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[42]", r.stdout + r.stderr


@pytest.mark.parametrize("desc_act,fit_act", [("relu", "softplus"), ("sigmoid", "relu6"),
                                              ("softplus", "sigmoid"), ("gelu", "silu"),
                                              ("silu", "gelu_tf")])
def test_activations_with_kernels_run_on_the_fast_path(desc_act, fit_act):
    """Every activation but tanh (kernel codes 2-7) in embedding and fitting nets: numba
    equals the reference to TOL, periodic, without falling back (assert_matches errors on any
    warning); the result differs from the same weights with tanh, so tanh was not used."""
    s = make_crystal(seed=3)
    cfg = config(ntypes=2, sel=(60, 60), activation_function=desc_act)
    cfg["fitting_net"]["activation_function"] = fit_act
    model = demo_model(cfg, seed=6)
    assert fastpath.unsupported_reason(model) is None
    ref, _ = assert_matches(model, s.coord, s.atype, s.box)
    hidden = [ly for net in model.descriptor.embeddings for ly in net] + \
        [ly for net in model.fitting.nets for ly in net[:-1]]
    for ly in hidden:
        ly.activation = "tanh"
    other = model.evaluate(s.coord, s.atype, s.box, backend="numpy")
    assert np.abs(other["forces"] - ref["forces"]).max() > 1e-3 * np.abs(ref["forces"]).max()


def test_a_layer_activation_without_kernel_falls_back_by_name():
    """unsupported_reason names a layer activation the kernels lack (silut with a threshold
    other than 3; every other activation symref implements has a kernel code)."""
    model = demo_model(config(), seed=13)
    model.fitting.nets[1][0].activation = "silut:2.0"
    assert fastpath.unsupported_reason(model) == (
        "activation 'silut:2.0' is not implemented in the numba fast path (it has "
        "['gelu', 'gelu_tf', 'linear', 'none', 'relu', 'relu6', 'sigmoid', 'silu', 'silut', "
        "'softplus', 'tanh'])")


def test_gpu_path_takes_every_activation_and_names_one_without_a_code():
    """The CUDA kernels take every activation code of the CPU kernels: cuda.unsupported_reason
    accepts relu and gelu models and packing their nets keeps the codes; a layer activation
    without a code (set directly) is named (so backend="cuda" falls back with a warning) and
    packing it is refused by name."""
    from symref.fast import cuda
    from symref.fast.kernels.activations import ACT_CODES
    from symref.fast.kernels.cuda_se_e2_a_device import ACT, NetPack

    for act in ("relu", "gelu"):
        cfg = config()
        cfg["fitting_net"]["activation_function"] = act
        model = demo_model(cfg, seed=13)
        assert cuda.unsupported_reason(model) is None
        pk = NetPack.pack(model.fitting.nets, np.float64, input_in_buffer=False)
        assert pk.meta[0, ACT] == ACT_CODES[act]
        assert pk.unpack()[0][0].activation == act
        model.fitting.nets[0][0].activation = "swish"
        assert cuda.unsupported_reason(model).startswith(
            "activation 'swish' is not implemented in the GPU path")
        with pytest.raises(ValueError, match="activation 'swish' is not implemented in the GPU"):
            NetPack.pack(model.fitting.nets, np.float64, input_in_buffer=False)


@pytest.mark.parametrize("mode,nthreads", [("blocks", 1), ("blocks", 2), ("blocks", 3),
                                           ("kernels", 2)])
def test_compressed_blocks_equal_per_type_and_per_thread(monkeypatch, mode, nthreads):
    """A compressed model's blocks (:func:`symref.fast.cpu_tables.table_blocks`) cover every centre
    once, in order, one type each; within a type they differ by at most one centre, exceed
    block_pairs pairs by less than one centre's, and in "blocks" mode their number
    per type is a multiple of the threads (each thread gets as many), in "kernels" mode as
    few as block_pairs allows."""
    from types import SimpleNamespace

    monkeypatch.setattr(fastpath.numba, "get_num_threads", lambda: nthreads)
    types = np.repeat([0, 1, 2, 0, 1], [64, 128, 3, 5, 700])  # two groups: 0:195, 195:900
    groups = [(0, 195), (195, 900)]
    S = SimpleNamespace(n=900, P=900 * 90, types_int=types, tabs=[])
    for block_pairs in (32768, 1000, 50):
        blocks = fastpath._make_blocks(S, groups, 3, mode, block_pairs)
        assert [b[1] for b in blocks] == [0] + [b[2] for b in blocks[:-1]]
        assert blocks[-1][2] == 900
        per = {}
        for ti, b0, b1 in blocks:
            assert b1 > b0 and (types[b0:b1] == ti).all()
            assert b1 - b0 <= -(-block_pairs // 90)  # about block_pairs: < one centre more
            per.setdefault((ti, b0 >= 195), []).append(b1 - b0)
        k = nthreads if mode == "blocks" else 1
        for (ti, _), sizes in per.items():
            assert max(sizes) - min(sizes) <= 1
            natoms = sum(sizes)
            fewest = k * -(-natoms * 90 // (k * block_pairs))
            assert len(sizes) == min(natoms, fewest)


def test_openblas_cores_names_the_kernels_of_numpys_blas():
    """symref.fast.blas.openblas_cores asks each loaded OpenBLAS which kernel set it runs;
    with OPENBLAS_CORETYPE set (this workplace may set it) that is the core it forced."""
    import os

    from symref.fast.blas import openblas_cores

    cores = openblas_cores()
    if not cores:
        pytest.skip("NumPy does not run on a loaded OpenBLAS here")
    assert all(isinstance(v, str) and v for v in cores.values())
    forced = os.environ.get("OPENBLAS_CORETYPE", "")
    if forced.lower() in ("haswell", "skylakex"):  # names OpenBLAS reports as given
        assert any(v.lower() == forced.lower() for v in cores.values()), (forced, cores)
