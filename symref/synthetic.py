r"""Synthetic, physically shaped data sets for demos, tests and benchmarks (no downloads).

:func:`nonlocal_clouds`: clouds whose label is a *nonlocal*, velocity-weighted
average over the region the cloud samples.  Each cloud b has its own random
linear velocity field and scalar field, in d = 2 or 3 dimensions,

.. math::

    \mathbf u(\mathbf x) = A\mathbf x + \mathbf c,\qquad
    s(\mathbf x) = \cos(\mathbf k\cdot\mathbf x + \varphi),\qquad
    w(\mathbf x) = e^{-|\mathbf x|^2/\ell^2}\,\big(1 + \tfrac12\tanh(\mathbf x\cdot\mathbf u(\mathbf x))\big),

(A, c, k with isotropic Gaussian entries, so the set has no preferred frame), and
the labels are weighted averages over the unit ball (disk) Ω,

.. math::

    y_{\text{scalar}} = \frac{\int_\Omega w\,s}{\int_\Omega w},\qquad
    \mathbf y_{\text{vector}} = \frac{\int_\Omega w\,\mathbf u}{\int_\Omega w},\qquad
    Y_{\text{tensor}} = \frac{\int_\Omega w\,\mathbf u\mathbf u^\top}{\int_\Omega w},

computed with a fixed quadrature of ``n_quad`` uniform points (the same rule for
every cloud).  A cloud of n points is n independent uniform samples of Ω with
``vectors`` = u at each point and ``scalars`` = s: the label depends on the
whole region, and a cloud of n points estimates it with sampling error
~ n^{-1/2}, so a model that averages over its cloud can be trained at one n and
used at another.  ``w`` is upstream/downstream asymmetric through x·u, as in
the transport problem's closures.

:func:`water_box`, :func:`water_tensor_labels`: liquid-water-like periodic boxes
and equivariant dipole/polarizability labels for them.  :data:`EXAMPLE_CONFIG`
(deepmd-kit's water ``se_e2_a`` example model size), :func:`replicate` and
:func:`replication_shape` build the large periodic systems of the benchmarks and
the tests that check them.
"""
from __future__ import annotations

import copy
import itertools

import numpy as np

#: deepmd-kit's water ``se_e2_a`` example model size (examples/water/se_e2_a/input.json),
#: float64; the model of the evaluation benchmarks and of the tests that check them.
EXAMPLE_CONFIG = {
    "type_map": ["O", "H"],
    "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                   "neuron": [25, 50, 100], "axis_neuron": 16, "resnet_dt": False,
                   "type_one_side": True, "precision": "float64"},
    "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True, "precision": "float64"},
}
#: the seed its random weights are drawn with in the benchmarks
EXAMPLE_SEED = 1


def example_config(type_one_side: bool = True) -> dict:
    """A fresh copy of :data:`EXAMPLE_CONFIG` with ``type_one_side`` set."""
    cfg = copy.deepcopy(EXAMPLE_CONFIG)
    cfg["descriptor"]["type_one_side"] = bool(type_one_side)
    return cfg


def replication_shape(k: int) -> tuple[int, int, int]:
    """The most cubic (a, b, c), a <= b <= c, with a*b*c = k (8 -> 2x2x2, 128 -> 4x4x8)."""
    if int(k) != k or k < 1:
        raise ValueError(f"replication_shape: k must be a positive integer, got {k!r}")
    best = None
    for a in range(1, k + 1):
        if k % a:
            continue
        for b in range(a, k // a + 1):
            if (k // a) % b:
                continue
            c = k // a // b
            if c < b:
                continue
            key = (c / a, c)
            if best is None or key < best[0]:
                best = (key, (a, b, c))
    return best[1]


def replicate(coord, atype, box, reps):
    """Tile one periodic frame ``reps`` = (a, b, c) times along the three cell vectors.

    ``coord`` natoms x 3, ``atype`` natoms, ``box`` 3 x 3 (cell vectors as rows).
    Returns ``(coord (a·b·c·natoms) x 3, atype, box 3 x 3)``, image by image
    (all atoms of the first copy, then the next, ...)."""
    coord, box = np.asarray(coord, dtype=np.float64), np.asarray(box, dtype=np.float64).reshape(3, 3)
    a, b, c = reps
    shifts = np.array([i * box[0] + j * box[1] + k * box[2]
                       for i, j, k in itertools.product(range(a), range(b), range(c))])  # ncopy x 3
    coord_r = (coord[None, :, :] + shifts[:, None, :]).reshape(-1, 3)  # (ncopy·natoms) x 3
    atype_r = np.tile(np.asarray(atype), len(shifts))
    box_r = box * np.array([a, b, c], dtype=float)[:, None]  # 3 x 3
    return coord_r, atype_r, box_r


def _ball(rng, n: int, d: int) -> np.ndarray:
    """n uniform points in the unit ball of R^d (n x d)."""
    x = rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x * rng.random((n, 1)) ** (1.0 / d)


def _fields(x, A, c, k, phi, ell):
    u = x @ A.T + c  # n x d
    s = np.cos(x @ k + phi)  # n
    w = np.exp(-np.sum(x * x, axis=1) / ell ** 2) * (1.0 + 0.5 * np.tanh(np.sum(x * u, axis=1)))
    return u, s, w


def nonlocal_clouds(n_clouds: int, n_points, dim: int = 2, output: str = "scalar", seed: int = 0,
                    n_quad: int = 4000, ell: float = 0.7):
    """``(clouds, labels)``: ``n_clouds`` clouds of ``n_points`` points each (an int, or
    a (low, high) range drawn per cloud), 1 vector feature (the velocity) and
    1 scalar feature per point; labels (N,), (N, d) or (N, d, d) by ``output``
    (module docstring).  Deterministic for a given ``seed``; the fields and labels
    depend on ``seed`` only, not on ``n_points``, so two calls differing only in
    ``n_points`` give the same problems sampled with clouds of different sizes."""
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    if output not in ("scalar", "vector", "tensor"):
        raise ValueError(f"output must be 'scalar', 'vector' or 'tensor', got {output!r}")
    rng = np.random.default_rng([seed, 0])  # fields: independent of the cloud sizes
    rng_pts = np.random.default_rng([seed, 1])  # point samples
    quad = _ball(np.random.default_rng(12345), n_quad, dim)  # the fixed quadrature rule
    clouds, labels = [], []
    for _ in range(n_clouds):
        A = rng.standard_normal((dim, dim)) * 0.7
        c = rng.standard_normal(dim)
        k = rng.standard_normal(dim) * 1.5
        phi = rng.uniform(0, 2 * np.pi)
        n = int(n_points) if np.ndim(n_points) == 0 else int(rng_pts.integers(n_points[0],
                                                                              n_points[1] + 1))
        x = _ball(rng_pts, n, dim)
        u, s, _ = _fields(x, A, c, k, phi, ell)
        clouds.append({"positions": x, "vectors": u[:, None, :], "scalars": s[:, None]})
        uq, sq, wq = _fields(quad, A, c, k, phi, ell)
        if output == "scalar":
            labels.append(np.sum(wq * sq) / np.sum(wq))
        elif output == "vector":
            labels.append(wq @ uq / np.sum(wq))
        else:
            labels.append(np.einsum("p,pa,pb->ab", wq, uq, uq) / np.sum(wq))
    return clouds, np.array(labels)



# ----------------------------------------------------------- polarisable water labels
#: SPC/E charges (e) and the isotropic molecular polarizability of water (Å³)
Q_H, ALPHA_W = 0.4238, 1.47


def _switch(r, r0, r1):
    """deepmd-kit's smooth switch: 1 below r0, 0 above r1, C² in between (value only)."""
    u = np.clip((r - r0) / (r1 - r0), 0.0, 1.0)
    return u ** 3 * (-6 * u ** 2 + 15 * u - 10) + 1


def _min_image(d, box):
    if box is None:
        return d
    frac = d @ np.linalg.inv(box)
    return (frac - np.round(frac)) @ box


def water_tensor_labels(coord, atype, box=None, *, o_type: int = 0, h_type: int = 1,
                        rc: float = 6.0, rc_smth: float = 5.0, b_aniso: float = 0.3,
                        c_field: float = 3.0) -> dict:
    r"""Dipoles and polarizabilities of a polarisable point-charge water model.

    Each H belongs to its nearest O (minimum image); charges are SPC/E's
    (:math:`q_H` = 0.4238 e, :math:`q_O = -2q_H`).  For molecule m with oxygen at
    :math:`\mathbf r_O` and unit O→H bond vectors :math:`\hat{\mathbf b}_k`:

    .. math::

        \mathbf E_m &= \sum_{k \notin m} q_k\,\frac{\mathbf r_O - \mathbf r_k}{|\mathbf r_O - \mathbf r_k|^3}\,
                      s(|\mathbf r_O - \mathbf r_k|) \quad\text{(field of the other molecules' charges, e/Å²)},\\
        \boldsymbol\mu_m &= q_H \sum_{k=1,2} (\mathbf r_{H_k} - \mathbf r_O) + \alpha_w \mathbf E_m
                      \quad\text{(e·Å: permanent + induced)},\\
        \alpha_m &= \alpha_w I + b\big(\hat{\mathbf a}\hat{\mathbf a}^\top - I/3\big)
                      + c\,\mathbf E_m \mathbf E_m^\top \quad\text{(Å³)},\qquad
        \hat{\mathbf a} = \frac{\hat{\mathbf b}_1 + \hat{\mathbf b}_2}{|\hat{\mathbf b}_1 + \hat{\mathbf b}_2|},

    with s the smooth switch from ``rc_smth`` to ``rc`` (Å), α_w = 1.47 Å³,
    b = ``b_aniso``, c = ``c_field``: a uniaxial molecule about its symmetry
    axis â (the dipole's direction).  Why uniaxial: an se_e2_a environment
    centred on O sees its two H only through radially weighted sums, so for
    equal O–H lengths only û1 + û2 is visible; a term in û1 − û2 (in-plane
    anisotropy) could not be represented by a DeepPolar on O (measured: Adam
    learned none of it), and a label should test the method, not its blind spot.  Labels sit on the oxygens (deepmd-kit's
    ``sel_type`` [O]): returns ``{"atom_dipole": (nf, nO, 3), "dipole": (nf, 3),
    "atom_polarizability": (nf, nO, 3, 3), "polarizability": (nf, 3, 3)}``.
    Equivariant by construction and smooth in the positions; nonlocal through
    the field, which a model with cutoff ≥ ``rc`` can represent.
    """
    coord = np.asarray(coord, dtype=np.float64)
    coord = coord.reshape(coord.shape[0], -1, 3) if coord.ndim != 3 else coord
    nf, natoms, _ = coord.shape
    atype = np.asarray(atype)
    oi, hi = np.nonzero(atype == o_type)[0], np.nonzero(atype == h_type)[0]
    if len(hi) != 2 * len(oi) or len(oi) + len(hi) != natoms:
        raise ValueError(f"need water: atoms of types {o_type} (O) and {h_type} (H) only, "
                         f"2 H per O; got {len(oi)} O, {len(hi)} H, {natoms} atoms")
    out = {k: [] for k in ("atom_dipole", "dipole", "atom_polarizability", "polarizability")}
    for f in range(nf):
        x = coord[f]
        b = None if box is None else np.asarray(box, dtype=np.float64).reshape(-1, 3, 3)[
            0 if np.asarray(box).size == 9 else f]
        if b is not None:
            face = abs(np.linalg.det(b)) / np.linalg.norm(np.cross(b[[1, 2, 0]], b[[2, 0, 1]]),
                                                        axis=1)
            if rc > 0.5 * face.min():
                raise ValueError(f"frame {f}: rc = {rc} Å exceeds half the cell's smallest "
                                 f"width ({0.5 * face.min():.2f} Å)")
        dOH = _min_image(x[hi][:, None] - x[oi][None], b)  # nH x nO x 3
        owner = np.argmin(np.sum(dOH ** 2, axis=-1), axis=1)  # nH
        if np.any(np.bincount(owner, minlength=len(oi)) != 2):
            bad = int(np.argmax(np.bincount(owner, minlength=len(oi)) != 2))
            raise ValueError(f"frame {f}: oxygen {int(oi[bad])} does not have exactly two "
                             "nearest hydrogens (not intact water molecules)")
        bond = dOH[np.arange(len(hi)), owner]  # nH x 3: O -> H
        mol = np.empty(natoms, dtype=np.int64)
        mol[oi], mol[hi] = np.arange(len(oi)), owner
        q = np.where(atype == o_type, -2 * Q_H, Q_H)
        dr = _min_image(x[oi][:, None] - x[None], b)  # nO x natoms x 3
        r = np.linalg.norm(dr, axis=-1)
        other = mol[None, :] != np.arange(len(oi))[:, None]
        w = np.where(other & (r < rc), q[None] * _switch(r, rc_smth, rc) /
                     np.maximum(r, 1e-12) ** 3, 0.0)
        E = np.einsum("oa,oad->od", w, dr)  # nO x 3
        perm = np.zeros((len(oi), 3))
        np.add.at(perm, owner, Q_H * bond)
        mu = perm + ALPHA_W * E
        u = bond / np.linalg.norm(bond, axis=1, keepdims=True)
        axis = np.zeros((len(oi), 3))
        np.add.at(axis, owner, u)
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        aniso = np.einsum("od,oe->ode", axis, axis) - np.eye(3) / 3
        alpha = ALPHA_W * np.eye(3) + b_aniso * aniso + c_field * np.einsum("od,oe->ode", E, E)
        out["atom_dipole"].append(mu)
        out["dipole"].append(mu.sum(axis=0))
        out["atom_polarizability"].append(alpha)
        out["polarizability"].append(alpha.sum(axis=0))
    return {k: np.array(v) for k, v in out.items()}


def water_box(nframes: int = 1, nmol: int = 64, side: float = 12.4447, seed: int = 0):
    """``(coord (nf, 3·nmol, 3), atype, box (nf, 3, 3))``: randomly placed and oriented
    rigid water molecules (O–H 0.9572 Å, H–O–H 104.52°) in a cube at liquid density,
    O–O distances ≥ 2.5 Å; atoms ordered O, H, H per molecule."""
    rng = np.random.default_rng(seed)
    th = np.deg2rad(104.52) / 2
    local = 0.9572 * np.array([[0, 0, 0], [np.sin(th), np.cos(th), 0],
                               [-np.sin(th), np.cos(th), 0]])
    box = np.eye(3) * side
    coords = []
    for _ in range(nframes):
        centres = []
        while len(centres) < nmol:
            c = rng.uniform(0, side, 3)
            if all(np.linalg.norm(_min_image(c - p, box)) >= 2.5 for p in centres):
                centres.append(c)
        mols = []
        for c in centres:
            qm, rr = np.linalg.qr(rng.standard_normal((3, 3)))
            mols.append(c + local @ (qm * np.sign(np.diag(rr))).T)
        coords.append(np.concatenate(mols))
    atype = np.tile([0, 1, 1], nmol)
    return np.array(coords), atype, np.tile(box, (nframes, 1, 1))
