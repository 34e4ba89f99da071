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
# # Tutorial 3 — Forces by hand-written backpropagation, checked by finite differences
#
# **What you will learn**
#
# * how forces $\mathbf F_k = -\partial E/\partial \mathbf x_k$ of a Deep Potential come out of one
#   backward pass: fitting net → $D$ → $T$ → embedding → environment rows → pair vectors → atoms;
# * to write that backward pass by hand in NumPy (about 40 lines) and get symref's forces to
#   round-off;
# * how to *prove* a derivative is right: central finite differences have error $\propto h^2$,
#   so the error must drop 4× when the step halves — the $h^2$ law on a log-log plot —
#   until round-off ($\propto \varepsilon/h$) takes over;
# * the toolkit that does this for any code: `symref.checks`.
#
# **Run time** (measured): quick mode ≈ 3 s, full mode ≈ 4 s (medium mode `--medium` is full mode:
# 2 s, measured 4 Dec 2026 at a load of about 3, `OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1`), up to ~30 s on the 2-core machine under
# heavy load (the first run of symref's numba
# kernels adds ~20 s of compilation once; they are cached afterwards).
# Units: Å, eV, eV/Å.

# %%
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
sys.path.insert(0, str(HERE))
from _common import mode_banner, pick, savefig  # noqa: E402

import symref  # noqa: E402
from symref import checks
from symref.io.data import make_crystal, make_molecule
from symref.model.build import demo_model

mode_banner("Tutorial 3")

# %% [markdown]
# ## 1. The model: a one-element Deep Potential for a 10-atom cluster
#
# The same `se_e2_a` model as at the end of Tutorial 2, now with an energy fitting net
# ($M_1 M_2 \to 16 \to 16 \to 1$): $E = \sum_i \big(\mathcal F(D_i) + b\big)$. Weights are random;
# the first fitting layer is scaled up so that forces are O(1 eV/Å), as in a trained model.

# %%
rc, rs, M1, M2 = 4.0, 1.0, 16, 4
natoms = 10
coord = make_molecule(natoms=natoms, ntypes=1, seed=3).coord[0]  # natoms x 3, Å
atype = np.zeros(natoms, dtype=int)
cfg = {"type_map": ["X"],
       "descriptor": {"type": "se_e2_a", "rcut": rc, "rcut_smth": rs, "sel": [natoms - 1],
                      "neuron": [8, M1], "axis_neuron": M2, "resnet_dt": True},
       "fitting_net": {"neuron": [16, 16], "resnet_dt": True}}
model = symref.build_model(cfg, seed=4)  # neutral statistics: davg = 0, dstd = 1
for net in model.fitting.nets:
    net[0].w *= 30.0
model.fitting.bias_atom_e[:] = -1.5  # eV per atom, any constant
emb_net, fit_net = model.descriptor.embeddings[0], model.fitting.nets[0]

# %% [markdown]
# ## 2. Forward pass, keeping what the backward pass needs
#
# For atom $i$ and its neighbours $j$, with $\mathbf r = \mathbf r_{ij} = \mathbf x_j - \mathbf x_i$:
#
# $$\tilde R_j = w(r)\big(\tfrac1r, \tfrac{\mathbf r}{r^2}\big),\quad
#   G = \mathcal N(s),\ s_j = \tilde R_{j0},\quad
#   T = \tfrac{1}{n_{nei}} G^\top \tilde R,\quad
#   D = T T_<^\top,\quad E_i = \mathcal F(\mathrm{vec}\, D) + b.$$
#
# One layer of either net (deepmd-kit's rule): $y = \tanh(xW + b)\odot d + \mathrm{sc}(x)$, with
# the shortcut $\mathrm{sc}(x) = x$ or $[x, x]$ when the widths allow it, $d$ = `idt`.

# %%
def switch(r):
    """w(r) and dw/dr (1/Å)."""
    u = np.clip((r - rs) / (rc - rs), 0.0, 1.0)
    return u ** 3 * (-6 * u ** 2 + 15 * u - 10) + 1, -30 * u ** 2 * (u - 1) ** 2 / (rc - rs)


def shortcut(x, nout):
    nin = x.shape[-1]
    return x if nout == nin else np.concatenate([x, x], axis=-1) if nout == 2 * nin else 0.0


def net_forward(x, layers):
    """Returns the output and the per-layer (x, h) needed by net_backward."""
    cache = []
    for ly in layers:
        z = x @ ly.w + ly.b
        h = np.tanh(z) if ly.activation == "tanh" else z
        y = (h * ly.idt if ly.idt is not None else h)
        y = y + (shortcut(x, ly.w.shape[1]) if ly.resnet else 0.0)
        cache.append((x, h))
        x = y
    return x, cache


def net_backward(dy, layers, cache):
    """dL/dx of the net's input, given dL/dy of its output (no parameter gradients here)."""
    for ly, (x, h) in zip(reversed(layers), reversed(cache)):
        dh = dy * ly.idt if ly.idt is not None else dy
        dz = dh * (1 - h * h) if ly.activation == "tanh" else dh
        dx = dz @ ly.w.T
        nin, nout = ly.w.shape
        if ly.resnet and nout == nin:
            dx = dx + dy
        elif ly.resnet and nout == 2 * nin:
            dx = dx + dy[..., :nin] + dy[..., nin:]
        dy = dx
    return dy


def energy_and_forces_by_hand(coord):
    nnei = natoms - 1  # sum(sel): the padded neighbour count
    E, F = 0.0, np.zeros_like(coord)
    for i in range(natoms):
        others = np.delete(np.arange(natoms), i)
        rvec = coord[others] - coord[i]  # nnei x 3
        r = np.linalg.norm(rvec, axis=1)
        w, dw = switch(r)
        R = np.column_stack([w / r, (w / r ** 2)[:, None] * rvec])  # nnei x 4
        G, emb_cache = net_forward(R[:, :1], emb_net)  # nnei x M1
        T = G.T @ R / nnei  # M1 x 4
        D = T @ T[:M2].T  # M1 x M2
        Ei, fit_cache = net_forward(D.reshape(1, -1), fit_net)
        E += Ei[0, 0] + model.fitting.bias_atom_e[0]
        # ---- backward: seed dE/dE_i = 1 and walk back
        dD = net_backward(np.ones((1, 1)), fit_net, fit_cache).reshape(M1, M2)
        dT = dD @ T[:M2]  # from the left factor of T T<ᵀ
        dT[:M2] += dD.T @ T  # from the right factor
        dG = R @ dT.T / nnei  # nnei x M1
        dR = G @ dT / nnei  # nnei x 4 (through T = GᵀR / nnei)
        dR[:, 0] += net_backward(dG, emb_net, emb_cache)[:, 0]  # through G = N(s), s = R[:, 0]
        # rows -> pair vectors: R0 = w/r, R_xyz = w r_vec / r²
        rhat = rvec / r[:, None]
        g = (dR[:, 0] * (dw / r - w / r ** 2))[:, None] * rhat \
            + (w / r ** 2)[:, None] * dR[:, 1:] \
            + (np.sum(dR[:, 1:] * rvec, axis=1) * (dw / r ** 2 - 2 * w / r ** 3))[:, None] * rhat
        # g_j = dE/dr_ij with r_ij = x_j - x_i:  dE/dx_j += g_j,  dE/dx_i -= sum_j g_j
        F[others] -= g
        F[i] += g.sum(axis=0)
    return E, F


E_hand, F_hand = energy_and_forces_by_hand(coord)
ref = model.evaluate(coord[None], atype, None, backend="numpy")
print(f"E by hand {E_hand:.12f} eV, symref {ref['energy'][0]:.12f} eV")
print(f"max |F_by_hand - F_symref| = {np.max(np.abs(F_hand - ref['forces'][0])):.1e} eV/Å "
      f"(max |F| = {np.max(np.abs(F_hand)):.2f} eV/Å)")
print(f"sum of forces (Newton's third law): {np.abs(F_hand.sum(axis=0)).max():.1e} eV/Å")
assert abs(E_hand - ref["energy"][0]) < 1e-11
assert np.allclose(F_hand, ref["forces"][0], rtol=1e-11, atol=1e-12)
assert np.abs(F_hand.sum(axis=0)).max() < 1e-12

# %% [markdown]
# ## 3. Finite differences and the $h^2$ law
#
# For a smooth $E$, Taylor expansion gives for the central difference
#
# $$\frac{E(\mathbf x + h\mathbf e) - E(\mathbf x - h\mathbf e)}{2h}
#   = \partial_{\mathbf e} E + \frac{h^2}{6}\,\partial^3_{\mathbf e} E + O(h^4),$$
#
# and the computed energies carry rounding errors $\sim \varepsilon |E|$, amplified to
# $\sim \varepsilon|E|/h$. So the difference between the FD force and the analytic force must
# fall like $h^2$ (4× per halving of $h$) down to a round-off floor that rises like $1/h$.
# A wrong analytic force shows up as an error that stops falling at a *finite* level — a
# plateau — long before round-off; the *slope*, not the size at one step, is the test.
# The one-sided difference $(E(\mathbf x + h\mathbf e) - E(\mathbf x))/h$ falls only like $h$.

# %%
def energy_by_hand(c):
    return energy_and_forces_by_hand(c)[0]


def energy_symref(c):
    return float(model.evaluate(c[None], atype, None)["energy"][0])


steps = np.logspace(-7, -0.5, pick(14, 27))  # Å
atoms = [0, 4]  # atoms whose force components we difference


def fd_errors(energy, forces, steps, central=True):
    errs = []
    for h in steps:
        fd = np.zeros((len(atoms), 3))
        for a, k in enumerate(atoms):
            for d in range(3):
                xp, xm = coord.copy(), coord.copy()
                xp[k, d] += h
                xm[k, d] -= h if central else 0.0
                fd[a, d] = -(energy(xp) - energy(xm)) / ((xp - xm)[k, d])
        errs.append(np.max(np.abs(fd - forces[atoms])))
    return np.array(errs)


err_hand = fd_errors(energy_by_hand, F_hand, steps)
err_symref = fd_errors(energy_symref, ref["forces"][0], steps)
err_forward = fd_errors(energy_by_hand, F_hand, steps, central=False)

# the slope in the truncation-dominated range (h between 1e-3 and 1e-1 Å)
sel = (steps > 1e-3) & (steps < 1e-1)
slope = np.polyfit(np.log(steps[sel]), np.log(err_hand[sel]), 1)[0]
slope_fwd = np.polyfit(np.log(steps[sel]), np.log(err_forward[sel]), 1)[0]
print(f"observed order, central differences: {slope:.2f} (expect 2); one-sided: {slope_fwd:.2f} (expect 1)")
assert 1.8 < slope < 2.2 and 0.8 < slope_fwd < 1.2

# %% [markdown]
# `symref.checks.check_forces_fd` automates exactly this for any calculator
# `calc(coord, box) -> {"energy", "forces", "virial"}`: two steps, the observed order, and a
# Richardson extrapolation $(4D(h/2) - D(h))/3$ whose error is $O(h^4)$. `run_all_checks`
# adds the virial (strain derivatives), the symmetries and the smoothness at the cutoff;
# below on a small periodic, triclinic crystal with a random two-element model.

# %%
calc = checks.as_calculator(model, atype)
res = checks.check_forces_fd(calc, coord)
print(f"check_forces_fd: order {res.order:.3f}, Richardson rel. error {res.max_rel_err:.1e}, "
      f"passed {res.passed}")
assert res.passed

crystal = make_crystal(seed=0)  # 8 atoms, two types, a skewed cell shorter than 2 rc
cfg2 = {"type_map": ["A", "B"],
        "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [40, 40],
                       "neuron": [8, 16], "axis_neuron": 4},
        "fitting_net": {"neuron": [16, 16]}}
crystal_model = demo_model(cfg2, seed=5)
results = checks.run_all_checks(checks.as_calculator(crystal_model, crystal.atype), crystal.coord[0],
                                crystal.box[0], atype=crystal.atype, rcut=4.0, rng=0)
print(checks.format_table(results))
assert checks.all_passed(results)

# %%
fig, ax = plt.subplots(figsize=(7, 5))
ax.loglog(steps, err_hand, "o-", label="central difference, forces by hand")
ax.loglog(steps, err_symref, "x--", label="central difference, symref forces")
ax.loglog(steps, err_forward, "s:", ms=4, label="one-sided difference, forces by hand")
k = np.argmin(np.abs(steps - 1e-2))
ax.loglog(steps, err_hand[k] * (steps / steps[k]) ** 2, "k-", lw=0.7, alpha=0.6, label=r"$\propto h^2$")
ax.loglog(steps, err_forward[k] * (steps / steps[k]), "k--", lw=0.7, alpha=0.6, label=r"$\propto h$")
eps_line = np.finfo(float).eps * abs(E_hand) / steps
ax.loglog(steps, eps_line, "k:", lw=0.9, label=r"round-off $\varepsilon |E| / h$")
ax.set_ylim(1e-13, 10)
ax.set_xlabel("finite-difference step h (Å)")
ax.set_ylabel(r"max $|F_{\mathrm{FD}} - F_{\mathrm{analytic}}|$ over 6 components (eV/Å)")
ax.set_title(f"the $h^2$ law: observed order {slope:.2f} (central), {slope_fwd:.2f} (one-sided)")
ax.legend(fontsize=8)
savefig(fig, "03_fd_h2_law.png")

# %% [markdown]
# ## Summary
#
# * Forces are one backward pass; the only non-network piece is the derivative of the
#   environment rows with respect to the pair vector, and the sign bookkeeping
#   $\mathbf r_{ij} = \mathbf x_j - \mathbf x_i$. Newton's third law ($\sum_k \mathbf F_k = 0$) comes
#   for free from translation invariance.
# * The FD error of the hand-written forces falls as $h^2$ over four decades of $h$ down to
#   round-off (~1e-10 eV/Å at h ≈ 1e-5 Å): that slope is the proof. A sign or factor error would give a
#   plateau at the size of the mistake.
# * Training needs the gradient of a *force* loss with respect to the weights — a second
#   derivative. symref does it forward-over-reverse (`symref/train/loss.py`); Tutorial 4 uses it.

# %% [markdown]
# ## Exercises
#
# Answers are checked by `tutorials/exercise_checks.py` (an `AssertionError` says what is
# wrong); solutions in `tutorials/solutions/03_exercises.py`.
#
# 1. **The backward pass of se_e2_r's rows.** The radial descriptor `se_e2_r` keeps only
#    column 0 of the rows, $s_j = w(r_j)/r_j$. Write `row_backward(ds, rvec, rs, rc)`
#    returning $\partial E/\partial\mathbf r_j$ ($n_{nei} \times 3$) from $\partial E/\partial s_j$,
#    with `switch` above. Check: `check_radial_row_backward(row_backward)` (against finite
#    differences, with neighbours inside, across and beyond the switching region).
# 2. **Measuring an order.** Write `order(steps, errors)`: the slope $p$ of
#    $\text{error} \approx C h^p$ in log-log, as used for the $h^2$ law above. Check:
#    `check_observed_order(order)`.

# %%
from exercise_checks import check_observed_order, check_radial_row_backward  # noqa: E402,F401

# a common slip — forgetting dw/dr, i.e. treating the switch as a constant — is caught:
try:
    check_radial_row_backward(lambda ds, rvec, rs_, rc_: (
        -(ds * switch(np.linalg.norm(rvec, axis=1))[0] / np.linalg.norm(rvec, axis=1) ** 3)[:, None] * rvec))
    raise RuntimeError("the check accepted a wrong answer")
except AssertionError as wrong:
    print(f"a wrong answer is rejected: {str(wrong)[:90]}...")
