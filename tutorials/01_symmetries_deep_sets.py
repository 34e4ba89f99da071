# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Tutorial 1 — Symmetries of a function of a point cloud: Deep Sets and Gram matrices
#
# **What you will learn**
#
# * what it means for $y = f(\mathbf x_1, \dots, \mathbf x_n)$ to respect translations,
#   rotations/reflections and permutations, and how to *test* it numerically;
# * Deep Sets, $f = \rho\big(\sum_i \phi(\mathbf x_i)\big)$: the seed talk's
#   $z_1^2 + z_2^2 + z_1 z_2$ example exactly, then a tiny Deep Sets network trained
#   by hand (forward and backward in NumPy) that is permutation invariant *by construction*,
#   next to a plain MLP that only learns the symmetry approximately;
# * the Deep Sets theorem with its condition on the latent width, and a measurement of what
#   a too-narrow latent space (width 1 vs 2 vs 8) costs — the talk's open question of
#   universal approximation, made concrete;
# * Gram matrices $X X^\top$: invariant under rotations, but not under permutations (and why
#   the talk's "$D' = X^\top X$", the 3 × 3 gyration tensor, is a different matrix);
# * why neither idea alone is enough — which is what Tutorial 2's $D = L L^\top$ fixes.
#
# **Run time** (2-core development machine, shared, measured): quick mode (`SYMREF_QUICK=1`) ≈ 3 s, full mode ≈ 5 s; medium mode (`--medium`) is full mode: 4 s
# (measured 4 Dec 2026 at a load of about 3, `OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1`).
# Run it with `python tutorials/01_symmetries_deep_sets.py`, or open it as a notebook
# with jupytext. Units: Å for positions, eV for energies (symref's conventions, see
# `../shared/docs/DESIGN.md`).

# %%
import itertools
import os
import sys
from pathlib import Path

# small matrices, thousands of times: one BLAS thread (measured: 71 s vs 5 s for full mode on the
# busy 2-core machine), unless the reader says otherwise (this must precede importing NumPy)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import minimize

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path.insert(0, str(HERE))
from _common import mode_banner, pick, savefig  # noqa: E402

from symref.model.params import mlp_grad_vector, mlp_vector, set_mlp_vector
from symref.reference.core import cloud_sum_forward
from symref.reference.nn import init_mlp, mlp_backward, mlp_forward

mode_banner("Tutorial 1")
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. A function of a point cloud and its symmetries
#
# Take $n$ atoms at positions $\mathbf x_i \in \mathbb R^3$ (rows of the $n\times 3$
# matrix $X$) and a physical energy, here a sum of Morse pair potentials
# $E = \sum_{i<j} V(|\mathbf x_i - \mathbf x_j|)$ with
# $V(r) = \varepsilon\,[(1 - e^{-a(r - r_0)})^2 - 1]$. Physics requires
#
# * translation: $E(\mathbf x_1 + \mathbf t, \dots, \mathbf x_n + \mathbf t) = E(\mathbf x_1,\dots,\mathbf x_n)$;
# * rotation and reflection: $E(Q\mathbf x_1, \dots, Q\mathbf x_n) = E$ for every orthogonal $Q$ ($\det Q = \pm 1$);
# * permutation: $E(\mathbf x_{\sigma(1)}, \dots, \mathbf x_{\sigma(n)}) = E$ for identical atoms.
#
# A numerical test applies each transformation to a random cloud and measures the relative
# change $|f(TX) - f(X)| / |f(X)|$: round-off ($\sim 10^{-16}$) means "invariant".

# %%
def morse_energy(X, eps=0.5, a=1.5, r0=1.5):
    """Sum of Morse pair energies (eV) of the points X (n x 3, Å)."""
    d = np.linalg.norm(X[:, None] - X[None], axis=-1)[np.triu_indices(len(X), 1)]
    return float(np.sum(eps * ((1 - np.exp(-a * (d - r0))) ** 2 - 1)))


def random_orthogonal(rng, det=1, dim=3):
    """Haar-random orthogonal matrix with determinant ``det`` (QR of a Gaussian matrix)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) * det < 0:
        q[:, 0] = -q[:, 0]
    return q


TRANSFORMS = {  # name -> X -> transformed X (rows are points, so Q acts as X Qᵀ)
    "translation": lambda X, r: X + r.normal(scale=3.0, size=3),
    "rotation": lambda X, r: X @ random_orthogonal(r, +1).T,
    "reflection": lambda X, r: X @ random_orthogonal(r, -1).T,
    "permutation": lambda X, r: X[r.permutation(len(X))],
}


def invariance_errors(f, X, rng, trials=5):
    """Largest relative change of f(X) under each transformation (``trials`` random draws)."""
    y = f(X)
    return {name: max(abs(f(T(X, rng)) - y) / max(abs(y), 1e-300) for _ in range(trials))
            for name, T in TRANSFORMS.items()}


n = 6
X = rng.uniform(-1.5, 1.5, size=(n, 3))  # Å
print(f"Morse energy of a random {n}-atom cloud: {morse_energy(X):.6f} eV")
err_morse = invariance_errors(morse_energy, X, rng)
for k, v in err_morse.items():
    print(f"  {k:12s} relative change {v:.1e}")
assert max(err_morse.values()) < 1e-13

# %% [markdown]
# A generic model does not have these symmetries. A multilayer perceptron on the flattened
# coordinates $\mathrm{vec}(X) \in \mathbb R^{3n}$ (random weights, symref's `symref.reference.nn`
# layers) changes by O(1) under every transformation:

# %%
mlp_raw = init_mlp(np.random.default_rng(1), 3 * n, [32, 32], resnet_dt=False, out_dim=1)


def f_mlp_raw(X):
    return float(mlp_forward(X.reshape(1, -1), mlp_raw)[0][0, 0])


err_mlp_raw = invariance_errors(f_mlp_raw, X, rng)
print({k: f"{v:.2g}" for k, v in err_mlp_raw.items()})
assert min(err_mlp_raw.values()) > 1e-3

# %% [markdown]
# ## 2. Permutations: Deep Sets
#
# The sum forgets the order, so $\rho\big(\sum_i \phi(z_i)\big)$ is permutation invariant
# whatever $\phi$ and $\rho$ are. The converse — *every* invariant function has this form —
# is the Deep Sets theorem, and it comes with a condition on the width $N$ of the latent
# space (the length of $\phi(z)$), which the talk's slide leaves out:
#
# > **Deep Sets theorem** (Zaheer et al. 2017; the continuous case made precise by Wagstaff
# > et al. 2019, *On the limitations of representing functions on sets*). Let
# > $f(z_1, \dots, z_n)$, $z_i \in \mathbb R$, be continuous and permutation invariant.
# > Then $f = \rho\big(\sum_{i=1}^n \phi(z_i)\big)$ with continuous
# > $\phi: \mathbb R \to \mathbb R^N$, $\rho: \mathbb R^N \to \mathbb R$ as soon as
# > $N \ge n$ (take $\phi(z) = (z, z^2, \dots, z^n)$: the power sums determine the set).
# > With $N < n$ there are continuous invariant functions that no continuous $\phi, \rho$
# > represent. (Zaheer et al.'s original proof, for sets from a *countable* universe, uses a
# > discontinuous $\phi$ and $N = 1$; it says nothing about networks, which are continuous.)
#
# So the latent width must grow with the set size; Section 2b measures what happens when it
# does not. The seed talk's example needs only $N = 2$, because it is a function of the first
# two power sums:
#
# $$z_1^2 + z_2^2 + z_1 z_2 = \tfrac12 (z_1 + z_2)^2 + \tfrac12 (z_1^2 + z_2^2),
# \qquad \phi(z) = \begin{pmatrix} z \\ z^2 \end{pmatrix},\quad
# \rho\begin{pmatrix} a \\ b\end{pmatrix} = \tfrac{a^2}{2} + \tfrac{b}{2}.$$
#
# The same $\phi,\rho$ give $\sum_{i \le j} z_i z_j$ for *any* n. Check it:

# %%
def phi_seed(z):
    return np.stack([z, z ** 2], axis=-1)  # (..., n) -> (..., n, 2)


def rho_seed(s):
    return s[..., 0] ** 2 / 2 + s[..., 1] / 2


for nset in (2, 3, 7):
    z = rng.normal(size=(1000, nset))
    exact = np.sum(z ** 2, axis=1) + np.sum(np.triu(z[:, :, None] * z[:, None, :], 1), axis=(1, 2))
    deep_sets = rho_seed(phi_seed(z).sum(axis=1))
    print(f"n = {nset}: max |Deep Sets - sum_(i<=j) z_i z_j| = {np.max(np.abs(deep_sets - exact)):.1e}")
    assert np.allclose(deep_sets, exact, rtol=1e-12, atol=1e-12)

# %% [markdown]
# ### Learning $\phi$ and $\rho$
#
# The ansatz of the talk: make $\phi$ and $\rho$ neural networks. We write the Deep Sets
# layer — the sum — and its backward pass by hand; the two MLPs come from `symref.reference.nn`
# (forward and hand-written backward, deepmd-kit's layer rule). With $S = \sum_i \phi(z_i)$
# and $y = \rho(S)$, the chain rule through the sum is simply "copy the gradient to every point":
#
# $$\frac{\partial y}{\partial \phi(z_i)} = \frac{\partial \rho}{\partial S}\quad\text{for every } i.$$
#
# We fit $f(z) = \sum_{i \le j} z_i z_j$ for sets of $n = 3$ numbers in $[-1, 1]$ from a few
# hundred examples with SciPy's L-BFGS, and fit a plain MLP on $(z_1, z_2, z_3)$ to the same data.

# %%
nset, ntrain, ntest = 3, pick(100, 300), 1000


def target(z):
    return 0.5 * z.sum(axis=1) ** 2 + 0.5 * (z ** 2).sum(axis=1)


z_train = rng.uniform(-1, 1, size=(ntrain, nset))
z_test = rng.uniform(-1, 1, size=(ntest, nset))
y_train, y_test = target(z_train), target(z_test)



def make_deep_sets(latent, seed):
    """Random phi: 1 -> 16 -> latent and rho: latent -> 16 -> 1 (latent = N, the latent width)."""
    r = np.random.default_rng(seed)
    return (init_mlp(r, 1, [16], resnet_dt=False, out_dim=latent, bias_std=0.5),
            init_mlp(r, latent, [16], resnet_dt=False, out_dim=1, bias_std=0.5))


def deep_sets_forward(z, phi, rho):
    """y (B,) for sets z (B x n): rho(sum_i phi(z_i)); returns y and the caches."""
    P, phi_cache = mlp_forward(z[..., None], phi)  # B x n x N
    S = P.sum(axis=1)  # B x N: the Deep Sets sum (by hand)
    y, rho_cache = mlp_forward(S, rho)  # B x 1
    return y[:, 0], (phi_cache, rho_cache, z.shape[1])


def deep_sets_backward(dy, cache):
    """Parameter gradients of <dy, y> as (phi grads, rho grads)."""
    phi_cache, rho_cache, nz = cache
    dS, g_rho = mlp_backward(dy[:, None], rho_cache)  # B x N
    dP = np.repeat(dS[:, None, :], nz, axis=1)  # B x n x N: the sum's backward, copied to every point
    _, g_phi = mlp_backward(dP, phi_cache)
    return g_phi, g_rho


def loss_deep_sets(theta, z, y, phi, rho):
    """Mean squared error of rho(sum phi) on (z, y) and its gradient in theta = (phi, rho)."""
    n_phi = mlp_vector(phi).size
    set_mlp_vector(phi, theta[:n_phi])
    set_mlp_vector(rho, theta[n_phi:])
    pred, cache = deep_sets_forward(z, phi, rho)
    res = pred - y
    g_phi, g_rho = deep_sets_backward(2 * res / len(y), cache)
    return np.mean(res ** 2), np.concatenate([mlp_grad_vector(phi, g_phi), mlp_grad_vector(rho, g_rho)])


def fit_deep_sets(phi, rho, z, y, maxiter):
    """L-BFGS on the squared error; leaves the trained parameters in phi, rho."""
    theta0 = np.concatenate([mlp_vector(phi), mlp_vector(rho)])
    res = minimize(loss_deep_sets, theta0, args=(z, y, phi, rho), jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter})
    loss_deep_sets(res.x, z, y, phi, rho)


phi, rho = make_deep_sets(latent=8, seed=2)  # 1 -> 16 -> 8 and 8 -> 16 -> 1

# the hand-written gradient is checked against finite differences before training
from symref.checks import check_gradient_fd

theta0 = np.concatenate([mlp_vector(phi), mlp_vector(rho)])
gcheck = check_gradient_fd(lambda t: loss_deep_sets(t, z_train, y_train, phi, rho), theta0,
                           ncomponents=30, rng=0)
print(f"Deep Sets gradient vs finite differences: rel. error {gcheck.max_rel_err:.1e}, "
      f"observed order {gcheck.order}")
assert gcheck.passed

maxiter = pick(150, 600)
fit_deep_sets(phi, rho, z_train, y_train, maxiter)


def f_deep_sets(z):
    return deep_sets_forward(np.atleast_2d(z), phi, rho)[0]


# the plain MLP on the ordered inputs, same data, same optimiser
mlp3 = init_mlp(np.random.default_rng(3), nset, [16, 16], resnet_dt=False, out_dim=1, bias_std=0.5)


def loss_mlp3(theta, z, y):
    set_mlp_vector(mlp3, theta)
    pred, cache = mlp_forward(z, mlp3)
    res = pred[:, 0] - y
    _, g = mlp_backward(2 * res[:, None] / len(y), cache)
    return np.mean(res ** 2), mlp_grad_vector(mlp3, g)


res_mlp = minimize(loss_mlp3, mlp_vector(mlp3), args=(z_train, y_train), jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter})
set_mlp_vector(mlp3, res_mlp.x)


def f_mlp3(z):
    return mlp_forward(np.atleast_2d(z), mlp3)[0][:, 0]


rmse = {name: float(np.sqrt(np.mean((f(z_test) - y_test) ** 2)))
        for name, f in (("Deep Sets", f_deep_sets), ("plain MLP", f_mlp3))}
print(f"Deep Sets: {mlp_vector(phi).size + mlp_vector(rho).size} parameters, plain MLP: {mlp_vector(mlp3).size}")
print("test RMSE:", {k: f"{v:.2e}" for k, v in rmse.items()}, f"(std of f: {y_test.std():.2f})")

# how much does each model change when the 3 numbers are shuffled (never the identity)?
perm_change = {}
for name, f in (("Deep Sets", f_deep_sets), ("plain MLP", f_mlp3)):
    shuffles = [p for p in itertools.permutations(range(nset)) if p != tuple(range(nset))]
    perms = np.array([shuffles[k] for k in rng.integers(len(shuffles), size=ntest)])
    z_perm = np.take_along_axis(z_test, perms, axis=1)
    perm_change[name] = np.abs(f(z_perm) - f(z_test))
    print(f"{name:10s}: max |f(shuffled z) - f(z)| = {perm_change[name].max():.1e}")
assert perm_change["Deep Sets"].max() < 1e-12  # exact, by construction
assert perm_change["plain MLP"].max() > 1e-4  # only learned, approximately
winner = min(rmse, key=rmse.get)
print(f"lower test RMSE in this run: {winner} "
      f"(plain MLP / Deep Sets = {rmse['plain MLP'] / rmse['Deep Sets']:.2f}); "
      f"the plain MLP's largest shuffle change is {perm_change['plain MLP'].max() / rmse['plain MLP']:.1f}x "
      f"its own test RMSE")
# the symmetry the MLP only learned is violated by about its own error, never exactly zero:
assert perm_change["plain MLP"].max() > 0.5 * rmse["plain MLP"]

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 4))
ax = axes[0]
lim = [y_test.min(), y_test.max()]
ax.plot(lim, lim, "k-", lw=0.8)
for (name, f), mk in zip((("Deep Sets", f_deep_sets), ("plain MLP", f_mlp3)), ("o", "x")):
    ax.plot(y_test, f(z_test), mk, ms=3, alpha=0.5, label=f"{name} (test RMSE {rmse[name]:.1e})")
ax.set_xlabel(r"true $f(z) = \sum_{i\leq j} z_i z_j$ (dimensionless)")
ax.set_ylabel("prediction (dimensionless)")
ax.set_title(f"fit from {ntrain} sets of {nset} numbers")
ax.legend(fontsize=8)
ax = axes[1]
floor = 1e-17  # exact zeros drawn at this level
bins = np.logspace(-17, 0, 52)
for name, c in (("Deep Sets", "C0"), ("plain MLP", "C1")):
    ax.hist(np.maximum(perm_change[name], floor), bins=bins, color=c, alpha=0.7, label=name)
ax.set_xscale("log")
ax.set_xlabel(r"$|f(\sigma z) - f(z)|$ for a random shuffle $\sigma$ (dimensionless; 0 drawn at $10^{-17}$)")
ax.set_ylabel("number of test sets")
ax.set_title("permutation invariance: built in vs learned")
ax.legend()
savefig(fig, "01_deep_sets.png")

# %% [markdown]
# The trained Deep Sets network changes by exactly zero (or one rounding) when the inputs
# are shuffled; the plain MLP, trained on the same data, is only approximately symmetric
# and its violation is as large as its error (both printed above).
#
# **Which one fits better?** Not necessarily Deep Sets. The comparison is fair — same data,
# same optimiser and number of L-BFGS iterations, about the same number of parameters (329
# vs 353) — and in the full run the plain MLP's test RMSE is *lower* (7.2e-3 vs 8.1e-3; quick
# mode, with fewer data and iterations, has Deep Sets ahead: the printed line above says which).
# With only $n = 3$ numbers, 300 sets cover $[-1, 1]^3$ densely, and the target is a smooth
# quadratic that an MLP interpolates easily; the Deep Sets net must squeeze it through a
# sum and a second network, a harder optimisation problem. Built-in symmetry guarantees the
# *invariance* (right panel: exact for Deep Sets, an error of the size of the fit for the MLP)
# and pays off in accuracy when the data do not already show the symmetry — Tutorial 8 measures
# that on vector clouds. It is not a promise of a lower error on every problem.
#
# ### 2b. Universal approximation: the latent width matters
#
# The theorem above needs the latent width $N \ge n$ in general; our target is a function of
# two power sums, so $N = 2$ suffices for it and $N = 1$ should not. Whether a *trained*
# network actually reaches a good approximation — with practical width, data and optimiser —
# is the open question the talk ends on; here is what we can measure: the same Deep Sets net,
# data and L-BFGS budget with latent width 1, 2 and 8 (the best of two random starts each).

# %%
latent_widths = (1, 2, 8)
rmse_latent = {}
for N in latent_widths:
    errs = []
    for seed in (2, 12):
        phi_n, rho_n = make_deep_sets(latent=N, seed=seed)
        fit_deep_sets(phi_n, rho_n, z_train, y_train, maxiter)
        errs.append(float(np.sqrt(np.mean((deep_sets_forward(z_test, phi_n, rho_n)[0] - y_test) ** 2))))
    rmse_latent[N] = min(errs)
    print(f"latent width N = {N}: test RMSE {rmse_latent[N]:.2e} (best of seeds; both: "
          f"{', '.join(f'{e:.1e}' for e in errs)})")
# a single summed number cannot carry the two power sums the target needs:
assert rmse_latent[1] > 3 * rmse_latent[8], rmse_latent
assert rmse_latent[1] > 3 * rmse_latent[2], rmse_latent

# %% [markdown]
# With $N = 1$ the test error stays close to the spread of the target (full run: 0.60, against
# 5.9e-3 for $N = 2$ and 7.8e-3 for $N = 8$; the target's standard deviation is 0.73): one
# summed number cannot carry both
# $\sum_i z_i$ and $\sum_i z_i^2$, however wide $\rho$ is. This is a measurement on one target
# and one set size, not a theorem — but it is the theorem's width condition at work, and the
# reason Deep Potential's embedding has $M$ = 25–100 channels, not one.
#
# ## 3. Rotations: Gram matrices
#
# Translations are handled by relative coordinates, $\mathbf x_i' = \mathbf x_i - \bar{\mathbf x}$
# (or $\mathbf x_i - \mathbf x_{\text{centre}}$). For rotations the talk uses inner products:
# the Gram matrix $(X'X'^\top)_{ij} = \mathbf x_i' \cdot \mathbf x_j'$ (n × n) is unchanged by
# $X' \mapsto X' Q^\top$ because $Q^\top Q = I$. But a permutation $P$ of the points
# gives $P X' X'^\top P^\top$: rows and columns move, so an MLP on
# $\mathrm{vec}(X'X'^\top)$ is rotation invariant and permutation *sensitive*.
# The spectrum of the Gram matrix would be invariant to everything — but it has at most
# 3 non-zero eigenvalues (those of the 3 × 3 gyration tensor $X'^\top X'$) whatever n is:
# almost all information is gone.
#
# > **Notation box — which matrix is "D′"?** The talk writes $D'_{ij} = \mathbf x'_i \cdot
# > \mathbf x'_j$ "or $D' = X^\top X$" with $X = [\mathbf x'_1, \dots, \mathbf x'_n]^\top$
# > (points as rows). These are two different matrices:
# >
# > * $X X^\top$ ($n \times n$, entries $\mathbf x'_i \cdot \mathbf x'_j$): the **Gram matrix**.
# >   Rotation invariant, *not* permutation invariant ($P X X^\top P^\top$). This is the one
# >   the talk means when it says "it lacks permutational invariance", and the one Tutorials 1
# >   and 2 use.
# > * $X^\top X = \sum_i \mathbf x'_i \mathbf x_i'^\top$ ($3 \times 3$): the **gyration tensor**
# >   (times n). It *is* permutation invariant (a sum over points — a Deep Sets sum), but not
# >   rotation invariant: it rotates as $Q X^\top X Q^\top$; only its 3 eigenvalues are invariant.
# >
# > Tutorial 2's $G$ is likewise $n \times M$ (one row per neighbour) and $L = G^\top X / n$ is
# > $M \times 4$, so $D = L L^\top$ is $M \times M$. The cell below checks both claims.

# %%
def centred(X):
    return X - X.mean(axis=0)


def gram(X):
    Xc = centred(X)
    return Xc @ Xc.T


mlp_gram = init_mlp(np.random.default_rng(4), n * n, [32, 32], resnet_dt=False, out_dim=1)


def f_mlp_gram(X):
    return float(mlp_forward(gram(X).reshape(1, -1), mlp_gram)[0][0, 0])


def f_gram_spectrum(X):
    ev = np.linalg.eigvalsh(gram(X))
    return float(np.sum(ev[-3:] ** 2) + ev[-1])  # any function of the (sorted) eigenvalues


P = np.eye(n)[rng.permutation(n)]
print("Gram of permuted cloud equals P G Pᵀ:", np.allclose(gram(P @ X), P @ gram(X) @ P.T))
print("non-zero eigenvalues of the 6x6 Gram matrix:", np.round(np.linalg.eigvalsh(gram(X)), 10))
err_mlp_gram = invariance_errors(f_mlp_gram, X, rng)
err_spectrum = invariance_errors(f_gram_spectrum, X, rng)
print("MLP(vec Gram):", {k: f"{v:.1e}" for k, v in err_mlp_gram.items()})
assert max(err_mlp_gram[k] for k in ("translation", "rotation", "reflection")) < 1e-12
assert err_mlp_gram["permutation"] > 1e-3

# the notation box: X'ᵀX' (3 x 3) is permutation invariant and rotates; X'X'ᵀ (n x n) the reverse
Q = random_orthogonal(rng, +1)
gyr = centred(X).T @ centred(X)  # 3 x 3
assert np.allclose(centred(P @ X).T @ centred(P @ X), gyr, rtol=0, atol=1e-13)  # permutation: unchanged
assert np.allclose(centred(X @ Q.T).T @ centred(X @ Q.T), Q @ gyr @ Q.T, rtol=0, atol=1e-13)  # rotates
assert np.abs(centred(X @ Q.T).T @ centred(X @ Q.T) - gyr).max() > 1e-3  # ... so it is not invariant
assert np.allclose(np.linalg.eigvalsh(gyr), np.linalg.eigvalsh(gram(X))[-3:], rtol=1e-12)
print("X'ᵀX' (3x3) is permutation invariant and rotation covariant; its eigenvalues are the "
      "non-zero ones of X'X'ᵀ (n x n)")

# %% [markdown]
# ## 4. Deep Sets on points: permutations yes, rotations only by giving up angles
#
# Deep Sets on the points themselves, $\rho(\sum_i \phi(\mathbf x_i'))$, is translation
# (centred) and permutation invariant — but $\phi(\mathbf x')$ of the Cartesian components
# rotates with the frame. Making $\phi$ depend on $|\mathbf x_i'|$ only restores rotation
# invariance and *loses every angle*: two clouds with the same set of distances from the
# centre become indistinguishable. Below, cloud A is a regular hexagon and cloud B a regular
# octahedron, both with all six atoms 1.1 Å from the centre: their Morse energies differ a
# lot, yet a radial Deep Sets model must give them the same value.

# %%
phi_pts = init_mlp(np.random.default_rng(5), 3, [16], resnet_dt=False, out_dim=8)
phi_rad = init_mlp(np.random.default_rng(6), 1, [16], resnet_dt=False, out_dim=8)
rho_pts = init_mlp(np.random.default_rng(7), 8, [16], resnet_dt=False, out_dim=1)


def f_deep_sets_xyz(X):
    S = mlp_forward(centred(X), phi_pts)[0].sum(axis=0, keepdims=True)
    return float(mlp_forward(S, rho_pts)[0][0, 0])


def f_deep_sets_radial(X):
    r_i = np.linalg.norm(centred(X), axis=1, keepdims=True)
    S = mlp_forward(r_i, phi_rad)[0].sum(axis=0, keepdims=True)
    return float(mlp_forward(S, rho_pts)[0][0, 0])


# symref's symmetric core computes exactly this sum: L = s * sum_j G_j (x) X_j, here with X_j = 1
G = mlp_forward(np.linalg.norm(centred(X), axis=1, keepdims=True), phi_rad)[0]
L, _ = cloud_sum_forward(G[None], np.ones((1, n, 1)))
assert np.allclose(L[0, :, 0], G.sum(axis=0), rtol=1e-14)

radius = 1.1  # Å
ang = np.arange(6) * np.pi / 3
cloud_a = radius * np.stack([np.cos(ang), np.sin(ang), np.zeros(6)], axis=1)  # hexagon
cloud_b = radius * np.vstack([np.eye(3), -np.eye(3)])  # octahedron
e_a, e_b = morse_energy(cloud_a), morse_energy(cloud_b)
print("distances from the centre, A:", np.linalg.norm(cloud_a, axis=1).round(12),
      " B:", np.linalg.norm(cloud_b, axis=1).round(12))
print(f"Morse energy: A {e_a:.3f} eV, B {e_b:.3f} eV")
print(f"radial Deep Sets: A {f_deep_sets_radial(cloud_a):.12f}, B {f_deep_sets_radial(cloud_b):.12f}")
assert abs(f_deep_sets_radial(cloud_a) - f_deep_sets_radial(cloud_b)) < 1e-12
assert abs(e_a - e_b) > 0.1 * abs(e_a)

# %%
err_ds_xyz = invariance_errors(f_deep_sets_xyz, X, rng)
err_ds_rad = invariance_errors(f_deep_sets_radial, X, rng)
assert err_ds_xyz["rotation"] > 1e-3 and err_ds_xyz["permutation"] < 1e-12
assert max(err_ds_rad.values()) < 1e-12

# %%
models = {
    "Morse energy (target)": err_morse,
    "MLP on vec(X)": err_mlp_raw,
    "MLP on vec(X'X'ᵀ)": err_mlp_gram,
    "Deep Sets, φ(x'ᵢ)": err_ds_xyz,
    "Deep Sets, φ(|x'ᵢ|)": err_ds_rad,
    "spectrum of X'X'ᵀ": err_spectrum,
}
names = list(TRANSFORMS)
M = np.array([[max(models[m][t], 1e-17) for t in names] for m in models])
fig = plt.figure(figsize=(13, 4.4))
ax = fig.add_subplot(1, 2, 1)
im = ax.imshow(np.log10(M), cmap="RdYlGn_r", vmin=-17, vmax=0, aspect="auto")
ax.set_xticks(range(len(names)), names)
ax.set_yticks(range(len(models)), list(models))
for i in range(M.shape[0]):
    for j in range(M.shape[1]):
        ax.text(j, i, "0" if M[i, j] <= 1e-17 else f"{M[i, j]:.0e}", ha="center", va="center",
                fontsize=8)
fig.colorbar(im, ax=ax, label=r"$\log_{10}$ relative change of the output")
ax.set_title("relative change of the output under each transformation\n"
             "(below ~1e-13 is round-off: invariant)", fontsize=10)
ax = fig.add_subplot(1, 2, 2, projection="3d")
for cloud, lab, mk in ((cloud_a, f"A, hexagon: E = {e_a:.2f} eV", "o"),
                       (cloud_b, f"B, octahedron: E = {e_b:.2f} eV", "s")):
    ax.scatter(*cloud.T, marker=mk, s=60, alpha=0.8, label=lab)
ax.plot(*np.vstack([cloud_a, cloud_a[:1]]).T, "C0-", lw=0.8)  # hexagon edges
ax.scatter(0, 0, 0, marker="+", s=80, color="k", label="centre")
ax.set_xlabel("x (Å)")
ax.set_ylabel("y (Å)")
ax.set_zlabel("z (Å)")
ax.set_box_aspect((1, 1, 1))
ax.set_title("all atoms 1.1 Å from the centre:\na radial Deep Sets model cannot tell A from B",
             fontsize=10)
ax.legend(fontsize=8, loc="upper left")
savefig(fig, "01_invariance_table.png")

# %% [markdown]
# ## Summary
#
# | construction | translation | rotation/reflection | permutation | keeps angles |
# |---|---|---|---|---|
# | MLP on coordinates | no | no | no | yes |
# | MLP on the Gram matrix of centred points | yes | yes | **no** | yes |
# | Deep Sets on centred points | yes | **no** | yes | yes |
# | Deep Sets on distances to the centre | yes | yes | yes | **no** |
# | spectrum of the Gram matrix | yes | yes | yes | only 3 numbers |
#
# Each idea buys one symmetry and pays in another currency. Tutorial 2 combines them:
# a Deep-Sets sum of radial embeddings *times the coordinates*, $L = G^\top X / n$
# (permutation invariant, rotates like X), then its Gram matrix $D = L L^\top$
# (rotation invariant) — all symmetries at once, angles kept.

# %% [markdown]
# ## Exercises
#
# Each answer is checked by a function of `tutorials/exercise_checks.py`: it returns quietly
# when the answer is right and raises an `AssertionError` saying what is wrong otherwise.
# Worked solutions: `tutorials/solutions/01_exercises.py`.
#
# 1. **A Deep Sets decomposition by hand.** Find $\phi: \mathbb R \to \mathbb R^2$ and
#    $\rho$ with $\rho\big(\sum_i \phi(z_i)\big) = \sum_{i<j} z_i z_j$ for sets of *any* size.
#    Check: `check_sum_decomposition(phi, rho, e2)` with `e2(z)` your target on a
#    `trials x n` array.
# 2. **The latent width at work.** For sets of three numbers, write $z_1 z_2 z_3$ as
#    $\rho\big(\sum_i \phi(z_i)\big)$ with $\phi(z) \in \mathbb R^3$ (hint: Newton's identities
#    for power sums). Check: `check_sum_decomposition(phi, rho, lambda z: z.prod(axis=1), set_sizes=(3,))`.
# 3. **The talk's $D' = X^\top X$.** Write `spectrum(X)`: the eigenvalues (ascending) of the
#    gyration tensor $\frac1n\sum_i (\mathbf x_i - \bar{\mathbf x})(\mathbf x_i - \bar{\mathbf x})^\top$.
#    Check: `check_gyration_spectrum(spectrum)` — it also tests all four symmetries and
#    that the spectrum tells the hexagon from the octahedron, which the radial Deep Sets
#    of Section 4 cannot.

# %%
from exercise_checks import check_gyration_spectrum, check_sum_decomposition  # noqa: E402,F401

# the seed's phi, rho give sum_{i<=j} z_i z_j, not sum_{i<j}: the check says so
try:
    check_sum_decomposition(phi_seed, rho_seed, lambda z: 0.5 * (z.sum(axis=1) ** 2 - (z ** 2).sum(axis=1)))
    raise RuntimeError("the check accepted a wrong answer")
except AssertionError as wrong:
    print(f"a wrong answer is rejected: {str(wrong)[:90]}...")
# your answers here, e.g. check_sum_decomposition(my_phi, my_rho, e2)
