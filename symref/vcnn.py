r"""Vector Cloud Neural Network: symmetric functions of clouds of points with attached vectors.

A *cloud* is n points around a query point, in d = 2 or 3 dimensions:

``positions``  (n x d)     relative positions :math:`\mathbf x_j = \mathbf p_j - \mathbf p_0`
``vectors``    (n x k x d) k vector features per point (velocities, ...): they rotate
                           with the frame; optional (k = 0)
``scalars``    (n x s)     invariant features per point (s may be 0); optional

Model (shapes per cloud; ``B`` clouds, ``n`` points, ``V = 1 + k`` vectors per point
:math:`\mathbf v_{j0} = \mathbf x_j, \mathbf v_{ja} = \mathbf u_{ja}`):

.. math::

    q_j &= \big(|\mathbf v_{ja}|_{a<V},\ \mathbf v_{ja}\cdot\mathbf v_{jb}\,_{a<b},\ s_j\big)
          \quad\text{standardised with training-set mean and std}\ (n_q),\\
    X_j &= \big(1,\ \mathbf v_{j0}/\sigma_0,\ \dots,\ \mathbf v_{jk}/\sigma_k\big)
          \quad (c = 1 + V d;\ \sigma_a = \text{training RMS of } |\mathbf v_a|),\\
    G_j &= \phi(q_j)\ (M_1), \qquad L = \frac1n \sum_j G_j \otimes X_j\ (M_1 \times c),
          \qquad D = L L_{<}^\top\ (M_1 \times M_2),\qquad o = \rho(\operatorname{vec} D),

with φ, ρ multilayer perceptrons (deepmd-kit's residual rule, :mod:`symref.reference.nn`)
and L, D from the core shared with ``se_e2_a`` (:mod:`symref.reference.core`).  Heads,
with :math:`\mathbf w_r` (r < M1·V) the vector rows of L (columns 1.. reshaped to
(M1·V) x d), which rotate like the positions:

- ``"scalar"``: :math:`y = \sigma_y o + \mu_y` (any number of outputs);
- ``"vector"``: :math:`\mathbf y = \sigma_y \sum_r o_r \mathbf w_r`, so :math:`\mathbf y \mapsto Q\mathbf y`;
- ``"tensor"``: :math:`Y = \sigma_y \sum_r o_r \mathbf w_r \mathbf w_r^\top + \mu_y I`,
  symmetric, :math:`Y \mapsto Q Y Q^\top`.

Every transformation Q in O(d) (rotations and reflections) acts on X as an
orthogonal matrix and cancels in D; a permutation of the points permutes the
sum; translating the whole problem leaves relative positions unchanged.  The
mean over the cloud (not the sum) makes the output an estimate of an integral
over the region the cloud samples, which is why one trained net serves clouds
of different sizes.

The vector and tensor heads are those of the dipole/polarizability fittings
(:func:`symref.reference.fitting.vector_head_forward`, ``tensor_head_forward`` with
the diagonal weights o).

Backward (hand-written, :func:`vcnn_backward`): head → ō, W̄ → φ̄ (fitting
backward) → D̄ → L̄ (:func:`symref.reference.core.gram_backward`, plus W̄ in the vector
columns) → Ḡ (:func:`symref.reference.core.cloud_sum_backward`) → embedding backward.

Ragged batches: clouds are sorted by size and padded within chunks; padded
points have X = 0 and q = 0, so they add exactly nothing to L and receive
exactly zero gradient (the normalisation uses each cloud's own n).

Backends (``VectorCloudNet(backend=...)``, ``vcnn_forward``, ``loss_and_grad``):
``"numpy"`` is the above, on the padded batches; ``"numba"`` (the estimator's default)
takes the same validated batches, stacks their real points without padding and
computes the embedding φ, the cloud sums L and D = L L<ᵀ (forward and backward) in
:mod:`symref.fast.vcnn`; the fitting net and the heads are the same code for both.
The two agree to round-off (~1e-15 relative).

Conventions and documented behaviour:

- A cloud needs at least one point; n = 1 is allowed (a *local* model: the
  cloud is the query point, ``positions`` usually zero).
- Duplicate points are allowed and count as often as they occur (the cloud is
  a multiset; L is a mean over its points).
- The norms |v| are not differentiable at v = 0 as functions of the inputs; the
  model is never differentiated with respect to its inputs, only its parameters.
- All clouds of a model share d, k and s; mixing them raises ``ValueError``.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

import numpy as np

from symref.model.params import mlp_grad_vector, mlp_vector, set_mlp_vector
from symref.reference.core import cloud_sum_backward, cloud_sum_forward, gram_backward, gram_forward
from symref.reference.fitting import (tensor_head_backward, tensor_head_forward, vector_head_backward,
                                      vector_head_forward)
from symref.reference.nn import Layer, init_mlp, mlp_backward, mlp_forward

OUTPUTS = ("scalar", "vector", "tensor")
#: ``"numba"``: embedding and cloud sums on stacked points (:mod:`symref.fast.vcnn`);
#: ``"numpy"``: the reference, on padded batches
BACKENDS = ("numba", "numpy")


# ----------------------------------------------------------------------- input
@dataclass
class Cloud:
    """One cloud: ``positions`` (n x d, relative to the query point), ``vectors``
    (n x k x d) and ``scalars`` (n x s); the last two optional."""

    positions: np.ndarray
    vectors: np.ndarray | None = None
    scalars: np.ndarray | None = None


def _field(cloud, name):
    if isinstance(cloud, dict):
        return cloud.get(name)
    return getattr(cloud, name, None)


def _as_float(a, what):
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what}: not a numeric array ({e})") from None
    return arr


def check_cloud(cloud, i: int = 0, dim: int | None = None, nvec: int | None = None,
                nscal: int | None = None):
    """``(positions (n x d), vectors (n x k x d), scalars (n x s))`` of one cloud as
    float64, validated; ``ValueError`` names cloud ``i``, the field and the shapes."""
    if not (isinstance(cloud, dict) or hasattr(cloud, "positions")):
        raise TypeError(f"cloud {i}: expected a mapping or object with 'positions' "
                        f"(and optional 'vectors', 'scalars'), got {type(cloud).__name__}")
    pos = _field(cloud, "positions")
    if pos is None:
        raise ValueError(f"cloud {i}: no 'positions'")
    x = _as_float(pos, f"cloud {i} positions")
    if x.ndim != 2 or x.shape[1] not in (2, 3):
        raise ValueError(f"cloud {i}: positions must have shape (n, 2) or (n, 3), "
                         f"got {x.shape}")
    n, d = x.shape
    if n == 0:
        raise ValueError(f"cloud {i}: has no points (n = 0); a cloud needs at least one")
    if dim is not None and d != dim:
        raise ValueError(f"cloud {i} is {d}-D but the model/batch is {dim}-D "
                         "(2-D and 3-D clouds cannot be mixed)")
    vec = _field(cloud, "vectors")
    u = np.zeros((n, 0, d)) if vec is None else _as_float(vec, f"cloud {i} vectors")
    if u.ndim == 2 and u.shape == (n, d):  # one vector per point given as n x d
        u = u[:, None, :]
    if u.ndim != 3 or u.shape[0] != n or u.shape[2] != d:
        raise ValueError(f"cloud {i}: vectors must have shape (n, k, d) = ({n}, k, {d}), "
                         f"got {u.shape}")
    if nvec is not None and u.shape[1] != nvec:
        raise ValueError(f"cloud {i}: {u.shape[1]} vector features per point, expected {nvec}")
    sc = _field(cloud, "scalars")
    s = np.zeros((n, 0)) if sc is None else _as_float(sc, f"cloud {i} scalars")
    if s.ndim == 1 and s.shape[0] == n:
        s = s[:, None]
    if s.ndim != 2 or s.shape[0] != n:
        raise ValueError(f"cloud {i}: scalars must have shape (n, s) = ({n}, s), got {s.shape}")
    if nscal is not None and s.shape[1] != nscal:
        raise ValueError(f"cloud {i}: {s.shape[1]} scalar features per point, expected {nscal}")
    for name, a in (("positions", x), ("vectors", u), ("scalars", s)):
        bad = ~np.isfinite(a)
        if bad.any():
            j = int(np.argwhere(bad)[0][0])
            raise ValueError(f"cloud {i}: {name} of point {j} are not finite (NaN or inf)")
        big = np.abs(a) > MAX_INPUT
        if big.any():
            j = int(np.argwhere(big)[0][0])
            raise ValueError(f"cloud {i}: {name} of point {j} reach {np.abs(a).max():.3g}, "
                             f"beyond {MAX_INPUT:.0e}: the invariants square them and would "
                             "overflow to inf/NaN; rescale the data")
    return x, u, s


#: largest |entry| of a cloud: its square (the invariants are inner products) stays
#: far from float64's overflow at 1.8e308
MAX_INPUT = 1e150


@dataclass
class CloudBatch:
    """Clouds padded to one size: ``vecs`` (B x n x V x d) with V = 1 + k
    (positions first), ``scalars`` (B x n x s), ``counts`` (B) real points,
    ``mask`` (B x n) real points.  Padding is zero."""

    vecs: np.ndarray
    scalars: np.ndarray
    counts: np.ndarray
    mask: np.ndarray
    #: the numba backend's stacked features, kept with the statistics they used
    stacked: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def dim(self) -> int:
        return self.vecs.shape[-1]


def _check_sequence(clouds):
    if isinstance(clouds, (dict, Cloud, np.ndarray)) or not hasattr(clouds, "__len__"):
        raise TypeError("clouds must be a sequence of clouds (a list of dicts or Cloud objects), "
                        f"got {type(clouds).__name__}")
    if len(clouds) == 0:
        raise ValueError("no clouds given")


def batch_clouds(clouds, dim=None, nvec=None, nscal=None, index=None) -> CloudBatch:
    """Validate and pad ``clouds`` (a sequence) into one :class:`CloudBatch`."""
    _check_sequence(clouds)
    index = range(len(clouds)) if index is None else index
    parts = []
    for i, c in zip(index, clouds):
        x, u, s = check_cloud(c, i, dim, nvec, nscal)
        dim, nvec, nscal = x.shape[1], u.shape[1], s.shape[1]
        parts.append((x, u, s))
    B, n = len(parts), max(p[0].shape[0] for p in parts)
    vecs = np.zeros((B, n, 1 + nvec, dim))  # B x n x V x d
    scal = np.zeros((B, n, nscal))  # B x n x s
    counts = np.empty(B, dtype=np.int64)
    for b, (x, u, s) in enumerate(parts):
        m = x.shape[0]
        vecs[b, :m, 0], vecs[b, :m, 1:], scal[b, :m], counts[b] = x, u, s, m
    mask = np.arange(n)[None, :] < counts[:, None]  # B x n
    return CloudBatch(vecs, scal, counts, mask)


def raw_invariants(batch: CloudBatch) -> np.ndarray:
    """q before standardisation: norms |v_a|, dots v_a·v_b (a < b), user scalars
    (B x n x nq); zero on padding."""
    return _invariants(batch.vecs, batch.scalars)


def _invariants(v, s):
    """:func:`raw_invariants` of vectors ``v`` (... x V x d) and scalars ``s`` (... x s)."""
    V = v.shape[-2]
    norms = np.sqrt(np.einsum("...ad,...ad->...a", v, v))  # ... x V
    iu, ju = np.triu_indices(V, k=1)
    dots = np.einsum("...ad,...ad->...a", v[..., iu, :], v[..., ju, :])  # ... x V(V-1)/2
    return np.concatenate([norms, dots, s], axis=-1)


def n_invariants(nvec: int, nscal: int) -> int:
    V = 1 + nvec
    return V + V * (V - 1) // 2 + nscal


# ----------------------------------------------------------------------- model
@dataclass
class VCNNParams:
    """Everything a fitted VCNN needs (see the module docstring for the symbols)."""

    dim: int
    nvec: int  # k, vector features per point
    nscal: int  # s, user scalars per point
    output: str  # "scalar" | "vector" | "tensor"
    nout: int  # scalar outputs (1 for vector/tensor heads: unused)
    axis_neuron: int  # M2
    q_avg: np.ndarray  # nq
    q_std: np.ndarray  # nq
    v_scale: np.ndarray  # V: σ_a
    y_shift: np.ndarray  # nout (scalar), 1 (tensor: μ_y), 0 (vector)
    y_scale: np.ndarray  # nout (scalar) or 1
    embedding: list[Layer] = field(default_factory=list)
    fitting: list[Layer] = field(default_factory=list)

    @property
    def M1(self) -> int:
        return self.embedding[-1].w.shape[1]


def head_width(output: str, M1: int, nvec: int, nout: int) -> int:
    """Outputs of the fitting net: nout coefficients (scalar) or M1·(1+k) (vector, tensor)."""
    return nout if output == "scalar" else M1 * (1 + nvec)


def init_params(rng, dim, nvec, nscal, output, nout, embedding, axis_neuron, fitting,
                resnet_dt=True) -> VCNNParams:
    """Random parameters with unit statistics (set them with :func:`set_statistics`)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    nq = n_invariants(nvec, nscal)
    M1 = int(embedding[-1])
    if not 0 < axis_neuron <= M1:
        raise ValueError(f"axis_neuron ({axis_neuron}) must be in [1, embedding[-1]={M1}]")
    emb = init_mlp(rng, nq, list(embedding), resnet_dt=resnet_dt, bias_std=0.1)
    fit = init_mlp(rng, M1 * axis_neuron, list(fitting), resnet_dt=resnet_dt,
                   out_dim=head_width(output, M1, nvec, nout), bias_std=0.1)
    ny = nout if output == "scalar" else 1
    return VCNNParams(dim, nvec, nscal, output, nout, int(axis_neuron), np.zeros(nq),
                      np.ones(nq), np.ones(1 + nvec), np.zeros(ny), np.ones(ny), emb, fit)


def _features(p: VCNNParams, batch: CloudBatch):
    """Standardised invariants q (B x n x nq) and rotating rows X (B x n x c)."""
    B, n, V, d = batch.vecs.shape
    q = (raw_invariants(batch) - p.q_avg) / p.q_std  # B x n x nq
    q *= batch.mask[..., None]
    X = np.empty((B, n, 1 + V * d))  # B x n x c
    X[..., 0] = batch.mask
    X[..., 1:] = (batch.vecs / p.v_scale[:, None]).reshape(B, n, V * d)
    return q, X


def _stacked_features(p: VCNNParams, batch: CloudBatch):
    """The real points of :func:`_features`, stacked without padding (cloud b owns rows
    ``ptr[b]:ptr[b+1]``): ``(q (P x nq), X (P x c), ptr (B + 1), 1/n (B))``.  Kept on
    the batch for the statistics they used (fixed while fitting)."""
    key = (p.q_avg.tobytes(), p.q_std.tobytes(), p.v_scale.tobytes())
    if batch.stacked is not None and batch.stacked[0] == key:
        return batch.stacked[1]
    v = batch.vecs[batch.mask]  # P x V x d
    P, V, d = v.shape
    q = (_invariants(v, batch.scalars[batch.mask]) - p.q_avg) / p.q_std  # P x nq
    X = np.empty((P, 1 + V * d))  # P x c
    X[:, 0] = 1.0
    X[:, 1:] = (v / p.v_scale[:, None]).reshape(P, V * d)
    ptr = np.concatenate([[0], np.cumsum(batch.counts)]).astype(np.int64)  # B + 1
    out = (q, X, ptr, 1.0 / batch.counts)
    batch.stacked = (key, out)
    return out


def vcnn_forward(p: VCNNParams, batch: CloudBatch, backend: str = "numpy", ws=None):
    """Outputs ``y`` — (B x nout), (B x d) or (B x d x d) by head — and the cache.

    ``backend="numba"``: the embedding and the cloud sum on the stacked points
    (:mod:`symref.fast.vcnn`; scratch from ``ws``, an :class:`symref.fast.cpu.Arena`,
    when given); the rest is the same code for both."""
    if batch.dim != p.dim or batch.vecs.shape[2] != 1 + p.nvec:
        raise ValueError(f"batch has d={batch.dim}, k={batch.vecs.shape[2] - 1}; model expects "
                         f"d={p.dim}, k={p.nvec}")
    B, d, M1, M2 = batch.vecs.shape[0], p.dim, p.M1, p.axis_neuron
    if check_backend(backend) == "numba":
        from symref.fast import vcnn as fast_vcnn
        from symref.fast.cpu import FreshArrays
        from symref.fast.kernels.activations import act_code

        for ly in p.embedding:  # refused before any kernel runs
            act_code(ly.activation, "VectorCloudNet backend='numba'")

        q, X, ptr, scale = _stacked_features(p, batch)
        L, D, core = fast_vcnn.core_forward(q, X, ptr, scale, p.embedding, M2,
                                            FreshArrays if ws is None else ws)  # B x M1 x c
        g_cache = None
    else:
        q, X = _features(p, batch)
        G, e_cache = mlp_forward(q, p.embedding)  # B x n x M1
        L, l_cache = cloud_sum_forward(G, X, 1.0 / batch.counts)  # B x M1 x c
        core = (e_cache, l_cache)
        D, g_cache = gram_forward(L, M2)  # B x M1 x M2
    o, f_cache = mlp_forward(D.reshape(B, M1 * M2), p.fitting)  # B x nfit
    W = L[:, :, 1:].reshape(B, -1, d)  # B x M1·V x d: the vector rows
    h_cache = None
    if p.output == "scalar":
        y = o * p.y_scale + p.y_shift  # B x nout
    elif p.output == "vector":
        y, h_cache = vector_head_forward(o, W)  # B x d (symref.reference.fitting)
        y = p.y_scale[0] * y
    else:
        y, h_cache = tensor_head_forward(o, W)  # B x d x d, Σ_r o_r w_r w_rᵀ
        y = p.y_scale[0] * y + p.y_shift[0] * np.eye(d)
    return y, (p, B, h_cache, backend, core, g_cache, f_cache)


def vcnn_backward(dy: np.ndarray, cache):
    """Parameter gradients of ``<dy, y>``: ``(None, {"embedding": layer grads, "fitting":
    layer grads})`` (lists of ``{"w", "b", "idt"}``, as :func:`symref.reference.nn.mlp_backward`).

    ``d_input`` is ``None``: the model is never differentiated with respect to its clouds."""
    p, B, h_cache, backend, core, g_cache, f_cache = cache
    M1, M2 = p.M1, p.axis_neuron
    dW = None
    if p.output == "scalar":
        do = dy * p.y_scale  # B x nout
    elif p.output == "vector":  # do: B x M1·V, dW: B x M1·V x d
        (do, dW), _ = vector_head_backward(p.y_scale[0] * dy, h_cache)
    else:
        (do, dW), _ = tensor_head_backward(p.y_scale[0] * dy, h_cache)
    dD, fit_grads = mlp_backward(do, f_cache)  # B x M1·M2
    if backend == "numba":
        from symref.fast import vcnn as fast_vcnn

        emb_grads = fast_vcnn.core_backward(dD.reshape(B, M1, M2), None if dW is None
                                            else dW.reshape(B, M1, -1), core)
    else:
        dL, _ = gram_backward(dD.reshape(B, M1, M2), g_cache)  # B x M1 x c
        if dW is not None:
            dL[:, :, 1:] += dW.reshape(B, M1, -1)
        e_cache, l_cache = core
        (dG, _), _ = cloud_sum_backward(dL, l_cache)  # B x n x M1
        _, emb_grads = mlp_backward(dG, e_cache)
    return None, {"embedding": emb_grads, "fitting": fit_grads}


# ------------------------------------------------------------ parameters, loss
def get_flat(p: VCNNParams) -> np.ndarray:
    """θ: embedding then fitting layers, ``w, b, idt`` each
    (:func:`symref.model.params.mlp_vector`)."""
    return mlp_vector(p.embedding + p.fitting)


def set_flat(p: VCNNParams, theta: np.ndarray) -> None:
    """Write θ (layout of :func:`get_flat`) back into ``p`` in place."""
    set_mlp_vector(p.embedding + p.fitting, theta)


def loss_and_grad(p: VCNNParams, batches, targets, grad: bool = True, backend: str = "numpy"):
    """Mean squared error in units of the target scale,
    :math:`\\ell = \\frac{1}{N m}\\sum_{b} |(y_b - t_b)/\\sigma_y|^2` over all N clouds
    (m components each), and its gradient with respect to :func:`get_flat` (or None).
    ``batches``/``targets``: lists of :class:`CloudBatch` and matching target arrays;
    ``backend``: ``"numpy"`` or ``"numba"`` (:func:`vcnn_forward`)."""
    check_backend(backend)
    if backend == "numba":
        from symref.fast.vcnn import session

        with session() as ws:
            return _loss_and_grad(p, batches, targets, grad, backend, ws)
    return _loss_and_grad(p, batches, targets, grad, backend, None)


def check_backend(backend) -> str:
    """``backend`` if it is one of :data:`BACKENDS`, else ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def _loss_and_grad(p, batches, targets, grad, backend, ws):
    N = sum(len(t) for t in targets)
    sc = p.y_scale if p.output == "scalar" else p.y_scale[0]  # nout or a number
    total, g = 0.0, None
    for batch, t in zip(batches, targets):
        y, cache = vcnn_forward(p, batch, backend, ws)
        r = (y - t) / sc  # like y
        m = r[0].size
        total += float(np.sum(r * r)) / (N * m)
        if grad:
            grads = vcnn_backward(2.0 * r / (sc * N * m), cache)[1]
            gb = mlp_grad_vector(p.embedding + p.fitting, grads["embedding"] + grads["fitting"])
            g = gb if g is None else g + gb
    return total, g


def set_statistics(p: VCNNParams, batches, targets) -> None:
    """Input and output statistics from training data (in place): mean/std of each
    invariant over real points (std < 1e-12 → 1), RMS length σ_a of each vector
    block (0 → 1), and the target shift/scale of the head (module docstring)."""
    qs = np.concatenate([raw_invariants(b)[b.mask] for b in batches])  # P x nq
    p.q_avg = qs.mean(axis=0)
    std = qs.std(axis=0)
    p.q_std = np.where(std > 1e-12, std, 1.0)
    v = np.concatenate([b.vecs[b.mask] for b in batches])  # P x V x d
    rms = np.sqrt(np.mean(np.sum(v * v, axis=-1), axis=0))  # V
    p.v_scale = np.where(rms > 0, rms, 1.0)
    t = np.concatenate(targets)
    if p.output == "scalar":
        p.y_shift = t.mean(axis=0)
        sd = t.std(axis=0)
        p.y_scale = np.where(sd > 0, sd, 1.0)
    elif p.output == "vector":
        rms = float(np.sqrt(np.mean(t * t)))
        p.y_shift, p.y_scale = np.zeros(1), np.array([rms if rms > 0 else 1.0])
    else:
        mu = float(np.mean(np.trace(t, axis1=1, axis2=2))) / p.dim
        a = t - mu * np.eye(p.dim)
        rms = float(np.sqrt(np.mean(a * a)))
        p.y_shift, p.y_scale = np.array([mu]), np.array([rms if rms > 0 else 1.0])


def check_targets(targets, n: int, output: str, dim: int):
    """Targets as float64 (N x nout), (N x d) or (N x d x d), validated."""
    t = _as_float(targets, "targets")
    if t.shape[:1] != (n,):
        raise ValueError(f"targets: {t.shape[0] if t.ndim else 0} rows for {n} clouds")
    if output == "scalar":
        if t.ndim == 1:
            t = t[:, None]
        if t.ndim != 2:
            raise ValueError(f"scalar targets must have shape (N,) or (N, m), got {t.shape}")
    elif output == "vector" and t.shape != (n, dim):
        raise ValueError(f"vector targets must have shape (N, d) = ({n}, {dim}), got {t.shape}")
    elif output == "tensor":
        if t.shape != (n, dim, dim):
            raise ValueError(f"tensor targets must have shape (N, d, d) = ({n}, {dim}, {dim}), "
                             f"got {t.shape}")
        asym = np.abs(t - t.transpose(0, 2, 1)).max()
        if asym > 1e-10 * max(1.0, np.abs(t).max()):
            raise ValueError(f"tensor targets must be symmetric (the head is R Q Rᵀ-equivariant "
                             f"and symmetric); largest |Y - Yᵀ| = {asym:.3g}")
    bad = ~np.isfinite(t)
    if bad.any():
        raise ValueError(f"targets of cloud {int(np.argwhere(bad)[0][0])} are not finite")
    return t


def make_batches(clouds, chunk: int = 256, **dims):
    """Clouds sorted by size and cut into chunks of ``chunk`` (little padding):
    ``(batches, order)`` with ``order`` the original index of each cloud, chunk by chunk."""
    _check_sequence(clouds)
    sizes = np.array([np.shape(_field(c, "positions"))[0] if _field(c, "positions") is not None
                      else 0 for c in clouds])
    order = np.argsort(sizes, kind="stable")
    batches = []
    for s in range(0, len(order), chunk):
        idx = order[s:s + chunk]
        b = batch_clouds([clouds[i] for i in idx], index=idx, **dims)
        dims = dict(dim=b.dim, nvec=b.vecs.shape[2] - 1, nscal=b.scalars.shape[2])
        batches.append(b)
    return batches, order


# --------------------------------------------------------------- estimator API
def _check_layer_shapes(p: VCNNParams, cfg: dict, path) -> None:
    """The layers read from a file have exactly the shapes :func:`init_params` gives for
    the stored configuration (a layer removed or resized is an error naming it)."""
    ref = init_params(np.random.default_rng(0), p.dim, p.nvec, p.nscal, p.output, p.nout,
                      cfg["embedding"], p.axis_neuron, cfg["fitting"], bool(cfg["resnet_dt"]))
    for net in ("embedding", "fitting"):
        got, want = getattr(p, net), getattr(ref, net)
        if len(got) != len(want):
            raise ValueError(f"{path}: {net} net has {len(got)} layers, but its configuration "
                             f"({net} {list(cfg[net])}) needs {len(want)}")
        for k, (a, b) in enumerate(zip(got, want)):
            for name in ("w", "b", "idt"):
                sa = None if getattr(a, name) is None else getattr(a, name).shape
                sb = None if getattr(b, name) is None else getattr(b, name).shape
                if sa != sb:
                    raise ValueError(f"{path}: {net} layer {k} {name} has shape {sa}, "
                                     f"expected {sb}")
    for name in ("q_avg", "q_std", "v_scale", "y_shift", "y_scale"):
        if getattr(p, name).shape != getattr(ref, name).shape:
            raise ValueError(f"{path}: {name} has shape {getattr(p, name).shape}, expected "
                             f"{getattr(ref, name).shape}")


class VectorCloudNet:
    """A VCNN in the scikit-learn habit: ``fit(clouds, targets)``, ``predict(clouds)``.

    Parameters
    ----------
    output : ``"scalar"``, ``"vector"`` or ``"tensor"`` (symmetric d x d).
    embedding : widths of φ (the last is M1).  Default (32, 64, 64), as published.
    axis_neuron : M2, columns of L kept in D = L L<ᵀ.  Default 4.
    fitting : hidden widths of ρ.  Default (128, 128).
    optimizer : ``"lbfgs"`` (SciPy L-BFGS-B, full batch; default) or ``"adam"``
        (minibatches of ``batch_size`` clouds, exponential lr decay from ``lr``
        to ``stop_lr`` over ``maxiter`` steps).
    maxiter : L-BFGS iterations or Adam steps.
    seed : random initialisation (and Adam's minibatch draws).
    verbose : progress lines (to stderr) every ``print_every`` iterations;
        or a callable taking one string.
    time_limit : seconds; training stops at the first iteration past it.
    backend : ``"numba"`` (default: the embedding net and the cloud sums on the stacked
        points of all clouds, :mod:`symref.fast.vcnn`) or ``"numpy"`` (the reference).
        An attribute: ``net.backend = "numpy"`` switches a fitted net.  The two agree
        to ~1e-15 relative; the input is validated before either runs.  Not stored in
        model files (:meth:`load` gives the default).

    Example::

        net = symref.VectorCloudNet(output="scalar", maxiter=300)
        net.fit(train_clouds, y)            # clouds: [{"positions": (n, d), "vectors": (n, k, d),
        y_hat = net.predict(test_clouds)     #           "scalars": (n, s)}, ...]
        net.save("vcnn.json"); net2 = symref.VectorCloudNet.load("vcnn.json")

    After ``fit``: ``params_`` (:class:`VCNNParams`), ``loss_history_``,
    ``n_iter_``.
    """

    def __init__(self, output: str = "scalar", *, embedding=(32, 64, 64), axis_neuron: int = 4,
                 fitting=(128, 128), resnet_dt: bool = True, optimizer: str = "lbfgs",
                 maxiter: int = 500, lr: float = 1e-3, stop_lr: float = 1e-5,
                 batch_size: int = 32, seed: int = 0, verbose=True, print_every: int = 25,
                 time_limit: float | None = None, chunk: int = 256, backend: str = "numba"):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if optimizer not in ("lbfgs", "adam"):
            raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
        if int(maxiter) < 0:
            raise ValueError(f"maxiter must be >= 0, got {maxiter}")
        self.output, self.embedding, self.axis_neuron = output, tuple(embedding), int(axis_neuron)
        self.fitting, self.resnet_dt, self.optimizer = tuple(fitting), bool(resnet_dt), optimizer
        self.maxiter, self.lr, self.stop_lr, self.batch_size = int(maxiter), lr, stop_lr, batch_size
        self.seed, self.verbose, self.print_every = seed, verbose, max(1, int(print_every))
        self.time_limit, self.chunk = time_limit, int(chunk)
        self.backend = check_backend(backend)
        self.params_: VCNNParams | None = None
        self._scalar_1d = False

    # ---- helpers
    def _say(self, msg):
        if callable(self.verbose):
            self.verbose(msg)
        elif self.verbose:
            print(msg, file=sys.stderr, flush=True)

    def _dims(self):
        p = self.params_
        return dict(dim=p.dim, nvec=p.nvec, nscal=p.nscal)

    def _prepare(self, clouds, targets):
        batches, order = make_batches(clouds, self.chunk,
                                      **(self._dims() if self.params_ is not None else {}))
        t = None
        if targets is not None:
            t = check_targets(targets, len(clouds), self.output, batches[0].dim)
            t = [t[order[s:s + self.chunk]] for s in range(0, len(order), self.chunk)]
        return batches, order, t

    # ---- API
    def fit(self, clouds, targets, *, warm_start: bool = False):
        """Train on ``clouds`` (sequence of clouds) and ``targets`` ((N,) or (N, m)
        scalars, (N, d) vectors or (N, d, d) symmetric tensors).  Returns self.

        With ``backend="numba"`` the whole fit runs with single-threaded BLAS: OpenBLAS's
        workers, woken by the optimiser's own vector operations, spin for a while after
        each call and took a core from the kernels' threads (fit 1.25 s against 0.85 s
        on the benchmark of ``benchmarks/vcnn_fast.py``).  SciPy is imported first: its
        L-BFGS-B runs on SciPy's own OpenBLAS, which :mod:`symref.fast.blas` can limit
        only once it is loaded (imported after the first limit, it kept two spinning
        threads: 1.2–1.3 s a fit instead of 0.87 s)."""
        if check_backend(self.backend) == "numba":
            import scipy.optimize  # noqa: F401  (loads SciPy's OpenBLAS; docstring)

            from symref.fast.blas import blas_threads

            with blas_threads(1):
                return self._fit(clouds, targets, warm_start)
        return self._fit(clouds, targets, warm_start)

    def _fit(self, clouds, targets, warm_start):
        from scipy.optimize import minimize

        if not (warm_start and self.params_ is not None):
            self.params_ = None
        batches, order, t = self._prepare(clouds, targets)  # targets validated, chunked
        self._scalar_1d = self.output == "scalar" and np.ndim(targets) == 1
        if self.params_ is None:
            b0 = batches[0]
            nout = t[0].shape[1] if self.output == "scalar" else 1
            self.params_ = init_params(np.random.default_rng(self.seed), b0.dim,
                                       b0.vecs.shape[2] - 1, b0.scalars.shape[2], self.output,
                                       nout, self.embedding, self.axis_neuron, self.fitting,
                                       self.resnet_dt)
            set_statistics(self.params_, batches, t)
        p = self.params_
        self.loss_history_ = []
        t0 = time.perf_counter()
        self._say(f"VectorCloudNet: {len(clouds)} clouds ({batches[0].dim}-D, k={p.nvec} "
                  f"vectors, s={p.nscal} scalars, n = {int(min(b.counts.min() for b in batches))}"
                  f"..{int(max(b.counts.max() for b in batches))}), "
                  f"{get_flat(p).size} parameters, {self.optimizer}")

        def report(it, loss):
            self.loss_history_.append(loss)
            if it % self.print_every == 0 or it == self.maxiter:
                self._say(f"  iter {it:6d}  loss {loss:.4e}  ({time.perf_counter() - t0:.1f} s)")

        def out_of_time():
            return self.time_limit is not None and time.perf_counter() - t0 >= self.time_limit

        if self.optimizer == "lbfgs":
            it = [0]

            def fun(theta):
                set_flat(p, theta)
                return loss_and_grad(p, batches, t, backend=self.backend)

            def callback(intermediate_result):
                it[0] += 1
                report(it[0], float(intermediate_result.fun))
                if out_of_time():
                    raise StopIteration

            res = minimize(fun, get_flat(p), jac=True, method="L-BFGS-B", callback=callback,
                           options={"maxiter": self.maxiter, "maxcor": 20, "gtol": 1e-12,
                                    "ftol": 1e-15})
            set_flat(p, res.x)
            self.n_iter_ = int(res.nit)
        else:
            tt = np.empty((len(clouds),) + t[0].shape[1:])  # back to the callers' order
            tt[order] = np.concatenate(t)
            self._fit_adam(p, clouds, tt, report, out_of_time)
        self._say(f"VectorCloudNet: done, {self.n_iter_} iterations, loss "
                  f"{loss_and_grad(p, batches, t, grad=False, backend=self.backend)[0]:.4e}, "
                  f"{time.perf_counter() - t0:.1f} s")
        return self

    def _fit_adam(self, p, clouds, tt, report, out_of_time):
        from symref.train.optim import Adam, ExpDecayLR

        rng = np.random.default_rng(self.seed + 1)
        sched = ExpDecayLR(self.lr, max(self.maxiter, 1), self.stop_lr)
        adam, theta = Adam(), get_flat(p)
        N = len(clouds)
        self.n_iter_ = 0
        for step in range(self.maxiter):
            idx = rng.choice(N, size=min(self.batch_size, N), replace=False)
            b = batch_clouds([clouds[i] for i in idx], index=idx, **self._dims())
            loss, g = loss_and_grad(p, [b], [tt[idx]], backend=self.backend)
            theta = adam.step(theta, g, sched.value(step))
            set_flat(p, theta)
            self.n_iter_ = step + 1
            report(step + 1, loss)
            if out_of_time():
                break

    def _check_fitted(self):
        if self.params_ is None:
            raise RuntimeError("VectorCloudNet is not fitted yet: call fit() or load()")

    def predict(self, clouds) -> np.ndarray:
        """Outputs for ``clouds``, in their order: (N,) or (N, m) scalars, (N, d)
        vectors or (N, d, d) tensors."""
        self._check_fitted()
        batches, order, _ = self._prepare(clouds, None)
        if check_backend(self.backend) == "numba":
            from symref.fast.vcnn import session

            with session() as ws:
                ys = np.concatenate([vcnn_forward(self.params_, b, "numba", ws)[0]
                                     for b in batches])
        else:
            ys = np.concatenate([vcnn_forward(self.params_, b)[0] for b in batches])
        out = np.empty_like(ys)
        out[order] = ys
        return out[:, 0] if self._scalar_1d else out

    def loss(self, clouds, targets) -> float:
        """The training loss (mean squared error over σ_y²) on ``clouds``."""
        self._check_fitted()
        batches, _, t = self._prepare(clouds, targets)
        return loss_and_grad(self.params_, batches, t, grad=False, backend=self.backend)[0]

    # ---- files
    def save(self, path) -> None:
        """Write the fitted model (``.json``, ``.yaml`` or ``.dp``; atomic)."""
        from symref.io.model_file import write_model_file

        self._check_fitted()
        p = self.params_
        layers = {"embedding": p.embedding, "fitting": p.fitting}
        data = {"software": "symref", "model": {
            "type": "vector_cloud_net", "@version": 1, "output": p.output, "dim": p.dim,
            "nvec": p.nvec, "nscal": p.nscal, "nout": p.nout, "axis_neuron": p.axis_neuron,
            "scalar_1d": self._scalar_1d,
            "config": {"embedding": list(self.embedding), "fitting": list(self.fitting),
                       "resnet_dt": self.resnet_dt},
            "layers": {k: [{"activation": ly.activation, "resnet": ly.resnet} for ly in v]
                       for k, v in layers.items()}},
            "@variables": {"q_avg": p.q_avg, "q_std": p.q_std, "v_scale": p.v_scale,
                           "y_shift": p.y_shift, "y_scale": p.y_scale,
                           **{k: [{"w": ly.w, "b": ly.b, "idt": ly.idt} for ly in v]
                              for k, v in layers.items()}}}
        write_model_file(path, data)

    @classmethod
    def load(cls, path) -> "VectorCloudNet":
        """Read a model written by :meth:`save`."""
        from symref.io.model_file import read_model_file

        d = read_model_file(path)
        m, var = d.get("model", {}), d.get("@variables", {})
        if not isinstance(m, dict) or m.get("type") != "vector_cloud_net":
            raise ValueError(f"{path}: not a VectorCloudNet model file")
        try:
            for k in ("embedding", "fitting"):
                if len(var[k]) != len(m["layers"][k]):
                    raise ValueError(f"{path}: {len(var[k])} {k} layers of weights but "
                                     f"{len(m['layers'][k])} layer descriptions")
            layers = {k: [Layer(np.asarray(a["w"]), None if a["b"] is None else np.asarray(a["b"]),
                                None if a["idt"] is None else np.asarray(a["idt"]),
                                c["activation"], c["resnet"])
                          for a, c in zip(var[k], m["layers"][k])]
                      for k in ("embedding", "fitting")}
            cfg = m["config"]
            net = cls(m["output"], embedding=cfg["embedding"], axis_neuron=m["axis_neuron"],
                      fitting=cfg["fitting"], resnet_dt=cfg["resnet_dt"], verbose=False)
            net.params_ = VCNNParams(m["dim"], m["nvec"], m["nscal"], m["output"], m["nout"],
                                     m["axis_neuron"], *(np.asarray(var[k], dtype=np.float64)
                                                         for k in ("q_avg", "q_std", "v_scale",
                                                                   "y_shift", "y_scale")),
                                     layers["embedding"], layers["fitting"])
            _check_layer_shapes(net.params_, cfg, path)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: malformed VectorCloudNet file ({type(e).__name__}: {e})") \
                from e
        net._scalar_1d = bool(m.get("scalar_1d", False))
        return net
