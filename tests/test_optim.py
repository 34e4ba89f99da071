"""Learning-rate schedule and Adam against deepmd-kit's and PyTorch's (when installed)."""
import numpy as np
import pytest

from symref.train.optim import Adam, ExpDecayLR, prefactor

CASES = [dict(start_lr=1e-3, num_steps=100000, stop_lr=3.51e-8, decay_steps=5000),
         dict(start_lr=2e-3, num_steps=1000, stop_lr=1e-6, decay_steps=5000),  # auto decay_steps
         dict(start_lr=1e-3, num_steps=20000, stop_lr=1e-7, decay_steps=500, smooth=True),
         dict(start_lr=1e-3, num_steps=20000, stop_lr=1e-7, decay_steps=500, warmup_steps=300,
              warmup_start_factor=0.1)]
STEPS = [0, 1, 99, 100, 299, 300, 301, 499, 500, 4999, 5000, 12345, 19999, 99999]


@pytest.mark.parametrize("case", CASES)
def test_lr_matches_deepmd(case):
    lr_mod = pytest.importorskip("deepmd.dpmodel.utils.learning_rate")
    ours = ExpDecayLR(**case)
    ref = lr_mod.LearningRateExp(**case)
    for s in STEPS:
        if s < case["num_steps"]:
            np.testing.assert_allclose(ours.value(s), float(ref.value(s)), rtol=1e-12)


def test_lr_schedule_endpoints_and_prefactor():
    lr = ExpDecayLR(start_lr=1e-3, num_steps=10000, stop_lr=1e-6, decay_steps=100)
    assert lr.value(0) == 1e-3
    np.testing.assert_allclose(lr.value(10000), 1e-6, rtol=1e-10)
    assert lr.value(150) == lr.value(100) < lr.value(99)  # staircase
    assert prefactor(1000.0, 1.0, lr.value(0), 1e-3) == 1000.0
    np.testing.assert_allclose(prefactor(0.02, 1.0, 1e-6, 1e-3), 1.0 - 0.98e-3)
    with pytest.raises(ValueError, match="decay_steps"):
        ExpDecayLR(start_lr=1e-3, num_steps=10, stop_lr=1e-6, decay_steps=0)


def test_adam_matches_torch_and_resumes_exactly():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    A = rng.normal(size=(6, 6))
    A = A @ A.T + np.eye(6)
    x0 = rng.normal(size=6)
    xt = torch.tensor(x0.copy(), requires_grad=True)
    opt = torch.optim.Adam([xt], lr=0.05)
    ours, x = Adam(), x0.copy()
    for k in range(30):
        opt.zero_grad()
        (0.5 * xt @ torch.tensor(A) @ xt).backward()
        opt.step()
        x = ours.step(x, A @ x, 0.05)
        if k == 14:  # checkpoint and resume halfway
            ours = Adam.from_state(ours.state())
    np.testing.assert_allclose(x, xt.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_adam_first_step_is_lr_times_sign():
    x = Adam().step(np.zeros(3), np.array([2.0, -1e-3, 5.0]), 0.01)
    np.testing.assert_allclose(x, [-0.01, 0.01, -0.01], rtol=1e-4)


@pytest.mark.deepmd
@pytest.mark.parametrize("warmup", [0, 7])
def test_cosine_schedule_is_deepmd_kits(warmup):
    """CosineLR equals deepmd-kit's LearningRateCosine at every step (warm-up, decay,
    beyond the end)."""
    lrmod = pytest.importorskip("deepmd.dpmodel.utils.learning_rate")
    from symref.train.optim import CosineLR

    ref = lrmod.LearningRateCosine(start_lr=1e-3, num_steps=50, stop_lr=1e-6,
                                   warmup_steps=warmup, warmup_start_factor=0.1)
    ours = CosineLR(start_lr=1e-3, num_steps=50, stop_lr=1e-6, warmup_steps=warmup,
                    warmup_start_factor=0.1)
    for step in range(0, 60):
        assert ours.value(step) == pytest.approx(float(ref.value(step)), rel=1e-13, abs=0), step
