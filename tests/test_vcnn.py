"""VectorCloudNet: exact parameter gradients (finite differences, order 2), symmetries
(O(d) in 2-D and 3-D, permutations, translation), ragged batches, bad input, files,
and that training learns a nonlocal target that transfers across cloud sizes."""
import numpy as np
import pytest
from tolerance import assert_allclose_scaled

import symref
from symref import vcnn
from symref import checks
from symref.synthetic import nonlocal_clouds


def _clouds(rng, sizes, d=3, k=2, s=1):
    return [{"positions": rng.normal(size=(n, d)), "vectors": rng.normal(size=(n, k, d)),
             "scalars": rng.normal(size=(n, s))} for n in sizes]


def _targets(rng, N, output, d):
    if output == "scalar":
        return rng.normal(size=(N, 2))
    if output == "vector":
        return rng.normal(size=(N, d))
    a = rng.normal(size=(N, d, d))
    return a + a.transpose(0, 2, 1)


def _net(output, clouds, t, seed=0):
    """A small net with statistics from the data and perturbed (non-initial) weights."""
    net = symref.VectorCloudNet(output, embedding=(4, 8), axis_neuron=3, fitting=(6, 6),
                                maxiter=0, verbose=False, seed=seed)
    net.fit(clouds, t)
    p = net.params_
    rng = np.random.default_rng(seed + 7)
    vcnn.set_flat(p, vcnn.get_flat(p) + 0.3 * rng.normal(size=vcnn.get_flat(p).size))
    return net


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("output", ["scalar", "vector", "tensor"])
def test_parameter_gradient_matches_finite_differences(output, d):
    rng = np.random.default_rng(1)
    clouds = _clouds(rng, [1, 3, 5, 8, 8, 2], d=d)
    t = _targets(rng, len(clouds), output, d)
    net = _net(output, clouds, t)
    p = net.params_
    batches, _, tt = net._prepare(clouds, t)

    def fun(theta):
        vcnn.set_flat(p, theta)
        return vcnn.loss_and_grad(p, batches, tt)

    res = checks.check_gradient_fd(fun, vcnn.get_flat(p), steps=(2e-3, 1e-3), ncomponents=60,
                                   rng=2, tol=1e-6)
    assert res.passed, str(res)
    assert res.details["rel_err_h1"] > 1e-10  # the check did measure a truncation error


def test_gradient_check_catches_a_wrong_gradient():
    rng = np.random.default_rng(3)
    clouds = _clouds(rng, [4, 6, 3])
    t = _targets(rng, 3, "vector", 3)
    net = _net("vector", clouds, t)
    p = net.params_
    batches, _, tt = net._prepare(clouds, t)

    def wrong(theta):
        vcnn.set_flat(p, theta)
        loss, g = vcnn.loss_and_grad(p, batches, tt)
        return loss, g * (1 + 1e-4)

    assert not checks.check_gradient_fd(wrong, vcnn.get_flat(p), ncomponents=None, rng=0)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("output", ["scalar", "vector", "tensor"])
def test_symmetries_hold_to_round_off(output, d):
    rng = np.random.default_rng(5)
    clouds = _clouds(rng, [1, 4, 9, 17], d=d, k=1, s=2)
    net = _net(output, clouds, _targets(rng, 4, output, d))
    res = checks.check_cloud_symmetry(net.predict, clouds, output, rng=6, tol=1e-12)
    assert [r.name.split("/")[0] for r in res] == ["rotation", "reflection", "permutation",
                                                   "translation"]
    assert checks.all_passed(res), checks.format_table(res)


def test_symmetry_check_catches_a_frame_dependent_model():
    rng = np.random.default_rng(8)
    clouds = _clouds(rng, [3, 5], d=2, k=1)

    def biased(cl):  # uses the x coordinate directly: not rotation invariant
        return np.array([np.mean(np.asarray(c["positions"])[:, 0]) for c in cl])

    res = checks.check_cloud_symmetry(biased, clouds, "scalar", rng=0)
    assert not res[0].passed and not res[1].passed and res[2].passed


def test_ragged_batches_equal_one_cloud_at_a_time_and_any_chunking():
    rng = np.random.default_rng(9)
    clouds = _clouds(rng, [7, 1, 12, 3, 3, 5])
    t = _targets(rng, 6, "tensor", 3)
    net = _net("tensor", clouds, t)
    y = net.predict(clouds)
    one = np.array([net.predict([c])[0] for c in clouds])
    assert_allclose_scaled(y, one, 1e-13, 1e-13, scale_of=y)
    net.chunk = 2
    assert_allclose_scaled(net.predict(clouds), y, 1e-13, 1e-13)
    # and the loss gradient does not depend on the padding either
    p = net.params_
    g1 = vcnn.loss_and_grad(p, *net._prepare(clouds, t)[::2])[1]
    net.chunk = 256
    g2 = vcnn.loss_and_grad(p, *net._prepare(clouds, t)[::2])[1]
    assert_allclose_scaled(g1, g2, 1e-12, 1e-13)


def test_documented_behaviour_single_point_and_duplicates():
    rng = np.random.default_rng(10)
    clouds = _clouds(rng, [1, 4], d=2, k=1)
    net = _net("scalar", clouds, _targets(rng, 2, "scalar", 2))
    assert np.all(np.isfinite(net.predict([{"positions": np.zeros((1, 2))}] and clouds)))
    c = clouds[1]
    doubled = {k: np.concatenate([v, v]) for k, v in c.items()}  # every point twice
    np.testing.assert_allclose(net.predict([doubled]), net.predict([c]), rtol=1e-13)


@pytest.mark.parametrize("bad, msg", [
    ({"positions": np.zeros((0, 3))}, "no points"),
    ({"positions": np.zeros((3, 4))}, "shape"),
    ({"positions": np.zeros((3, 3)), "vectors": np.zeros((3, 1, 2))}, "vectors must have shape"),
    ({"positions": np.zeros((3, 3)), "scalars": np.array([[1.0], [np.nan], [0.0]])},
     "scalars of point 1 are not finite"),
    ({"positions": np.zeros((2, 2))}, "2-D"),
    ({"velocity": np.zeros((2, 3))}, "no 'positions'"),
])
def test_bad_clouds_raise_clear_errors(bad, msg):
    good = {"positions": np.ones((2, 3)), "scalars": np.ones((2, 1))}
    with pytest.raises(ValueError, match=msg) as e:
        vcnn.batch_clouds([good, dict(bad, **({"scalars": np.ones((len(bad.get(
            "positions", [])), 1))} if "scalars" not in bad and "positions" in bad else {}))])
    assert "cloud 1" in str(e.value) or "no points" in str(e.value)


def test_bad_containers_and_targets():
    with pytest.raises(TypeError, match="sequence of clouds"):
        vcnn.batch_clouds({"positions": np.zeros((2, 3))})
    with pytest.raises(ValueError, match="no clouds"):
        vcnn.batch_clouds([])
    rng = np.random.default_rng(0)
    clouds = _clouds(rng, [2, 3], d=2)
    net = symref.VectorCloudNet("tensor", maxiter=0, verbose=False)
    with pytest.raises(ValueError, match="symmetric"):
        net.fit(clouds, rng.normal(size=(2, 2, 2)))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        symref.VectorCloudNet("vector", verbose=False).fit(clouds, np.zeros((2, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        symref.VectorCloudNet().predict(clouds)
    with pytest.raises(ValueError, match="output must be"):
        symref.VectorCloudNet("matrix")
    fitted = _net("scalar", clouds, np.zeros(2))
    with pytest.raises(ValueError, match="3-D but the model"):
        fitted.predict(_clouds(rng, [2], d=3))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_load_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(11)
    clouds = _clouds(rng, [3, 6], d=2, k=1)
    net = _net("vector", clouds, _targets(rng, 2, "vector", 2))
    net.save(tmp_path / f"m{suffix}")
    back = symref.VectorCloudNet.load(tmp_path / f"m{suffix}")
    np.testing.assert_array_equal(back.predict(clouds), net.predict(clouds))
    (tmp_path / "x.json").write_text('{"model": {"type": "se_e2_a"}}')
    with pytest.raises(ValueError, match="not a VectorCloudNet"):
        symref.VectorCloudNet.load(tmp_path / "x.json")


@pytest.mark.parametrize("where", ["both", "description", "weights"])
def test_a_file_with_a_layer_removed_is_refused(tmp_path, where):
    """A fitting layer removed from the file (its weights, its description or both) is an
    error naming the net and the layer count; before, zip() truncated and it loaded."""
    import json

    rng = np.random.default_rng(11)
    clouds = _clouds(rng, [3, 6], d=2, k=1)
    net = _net("vector", clouds, _targets(rng, 2, "vector", 2))
    net.save(tmp_path / "m.json")
    d = json.loads((tmp_path / "m.json").read_text())
    if where in ("both", "description"):
        d["model"]["layers"]["fitting"].pop(0)
    if where in ("both", "weights"):
        d["@variables"]["fitting"].pop(0)
    (tmp_path / "bad.json").write_text(json.dumps(d))
    msg = "fitting net has .* layers, but its configuration" if where == "both" else \
        "fitting layers of weights but .* layer descriptions"
    with pytest.raises(ValueError, match=msg):
        symref.VectorCloudNet.load(tmp_path / "bad.json")


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_training_learns_a_nonlocal_target_and_reports_progress(optimizer):
    clouds, y = nonlocal_clouds(120, (10, 20), dim=2, output="scalar", seed=1)
    lines = []
    net = symref.VectorCloudNet("scalar", embedding=(8, 16), fitting=(32,), optimizer=optimizer,
                                maxiter=60 if optimizer == "lbfgs" else 300, lr=1e-2, stop_lr=1e-4,
                                verbose=lines.append, print_every=20)
    net.fit(clouds, y)
    # the loss is MSE / var(y): predicting the mean scores 1
    assert net.loss(clouds, y) < 0.3
    assert any("iter" in ln for ln in lines) and "done" in lines[-1]
    assert net.predict(clouds).shape == (120,)


def test_adaptivity_check_separates_averaging_from_summing_models():
    clouds, y = nonlocal_clouds(150, (20, 40), dim=2, output="scalar", seed=4)
    net = symref.VectorCloudNet("scalar", embedding=(8, 16), fitting=(32,), maxiter=80,
                                verbose=False).fit(clouds, y)

    def sample(n):
        return nonlocal_clouds(60, n, dim=2, output="scalar", seed=5)[0]

    res = checks.check_cloud_adaptivity(net.predict, sample, sizes=(25, 150, 600), tol=0.35)
    assert res.passed, res.details
    d = res.details["rel_diff"]
    assert d[150] < d[25]  # converges as the clouds grow

    def summing(cl):  # depends on the number of points
        return np.array([np.sum(c["scalars"]) for c in cl])

    assert not checks.check_cloud_adaptivity(summing, sample, sizes=(25, 150, 600), tol=0.35)


# ------------------------------------------------------------ backend="numba"
@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("output", ["scalar", "vector", "tensor"])
def test_numba_backend_equals_the_reference(output, d):
    """Predictions, loss and loss gradient of the numba backend against the NumPy one on
    ragged clouds (one-point clouds included), chunked into several batches."""
    rng = np.random.default_rng(20 + d)
    clouds = _clouds(rng, [1, 9, 4, 1, 15, 6, 2, 30], d=d, k=1, s=2)
    t = _targets(rng, len(clouds), output, d)
    net = _net(output, clouds, t)
    net.chunk = 3
    assert net.backend == "numba"
    y = net.predict(clouds)
    g = vcnn.loss_and_grad(net.params_, *net._prepare(clouds, t)[::2], backend="numba")
    net.backend = "numpy"
    y_ref = net.predict(clouds)
    g_ref = vcnn.loss_and_grad(net.params_, *net._prepare(clouds, t)[::2], backend="numpy")
    assert_allclose_scaled(y, y_ref, 1e-13, 1e-13)
    assert abs(g[0] - g_ref[0]) <= 1e-13 * g_ref[0]
    assert_allclose_scaled(g[1], g_ref[1], 1e-12, 1e-13)


def test_numba_backend_same_bits_for_one_and_two_threads(monkeypatch):
    import numba

    from symref.fast import vcnn as fv
    monkeypatch.setattr(fv.cloud_blocks, "__defaults__", (20,))  # several blocks
    rng = np.random.default_rng(30)
    clouds = _clouds(rng, [5, 9, 14, 3, 11, 8, 20], d=2, k=1)
    t = _targets(rng, len(clouds), "vector", 2)
    net = _net("vector", clouds, t)
    args = net._prepare(clouds, t)[::2]
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = vcnn.loss_and_grad(net.params_, *args, backend="numba")
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = vcnn.loss_and_grad(net.params_, *args, backend="numba")
    finally:
        numba.set_num_threads(before)
    assert one[0] == two[0]
    np.testing.assert_array_equal(one[1], two[1])


def test_backend_is_checked_and_not_stored(tmp_path):
    with pytest.raises(ValueError, match="backend must be one of"):
        symref.VectorCloudNet(backend="cuda")
    rng = np.random.default_rng(31)
    clouds = _clouds(rng, [3, 6], d=2, k=1)
    net = _net("scalar", clouds, _targets(rng, 2, "scalar", 2))
    net.backend = "numpy"
    net.save(tmp_path / "m.json")
    back = symref.VectorCloudNet.load(tmp_path / "m.json")
    assert back.backend == "numba"  # the default: the file has no backend
    assert_allclose_scaled(back.predict(clouds), net.predict(clouds), 1e-13, 1e-13)
    net.backend = "fortran"
    with pytest.raises(ValueError, match="backend must be one of"):
        net.predict(clouds)
    with pytest.raises(ValueError, match="backend must be one of"):
        vcnn.vcnn_forward(net.params_, vcnn.batch_clouds(clouds), "cuda")


@pytest.mark.parametrize("bad, msg", [
    ({"positions": np.zeros((0, 2))}, "cloud 1: has no points"),
    ({"positions": np.array([[0.0, 1.0], [np.nan, 0.0]])},
     "cloud 1: positions of point 1 are not finite"),
    ({"positions": np.zeros((3, 3))}, "cloud 1 is 3-D but the model/batch is 2-D"),
    ({"positions": np.array([[0.0, 1.0], [1e200, 0.0]])},
     "cloud 1: positions of point 1 reach 1e\\+200, beyond 1e\\+150"),
])
@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_bad_clouds_refused_the_same_by_both_backends(bad, msg, backend):
    rng = np.random.default_rng(32)
    good = {"positions": rng.normal(size=(3, 2))}
    net = symref.VectorCloudNet(maxiter=0, verbose=False, backend=backend)
    with pytest.raises(ValueError, match=msg):
        net.fit([good, bad], np.zeros(2))
    net.fit([good, good], np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=msg):
        net.predict([good, bad])


@pytest.mark.parametrize("act", ["softplus", "gelu"])
def test_numba_backend_activations(act):
    """Embedding layers with another activation (softplus: h kept; gelu: z kept) give the
    reference's numbers on backend="numba"; a name without a kernel (set directly on the
    layers) is refused naming the activation and the backend, before any kernel runs."""
    rng = np.random.default_rng(31)
    clouds = _clouds(rng, [3, 9, 5, 12], d=3, k=1, s=2)
    t = _targets(rng, len(clouds), "scalar", 3)
    net = _net("scalar", clouds, t)
    args = net._prepare(clouds, t)[::2]
    for ly in net.params_.embedding:
        ly.activation = act
    g = vcnn.loss_and_grad(net.params_, *args, backend="numba")
    g_ref = vcnn.loss_and_grad(net.params_, *args, backend="numpy")
    assert abs(g[0] - g_ref[0]) <= 1e-13 * g_ref[0]
    assert_allclose_scaled(g[1], g_ref[1], 1e-12, 1e-13)
    for ly in net.params_.embedding:
        ly.activation = "silut:2.0"  # silut with a threshold other than 3 has no kernel code
    with pytest.raises(ValueError, match="activation 'silut:2.0' is not implemented in "
                                         "VectorCloudNet backend='numba'"):
        vcnn.loss_and_grad(net.params_, *args, backend="numba")
