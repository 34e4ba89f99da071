r"""Multi-layer perceptrons with deepmd-kit's residual rule: forward and backward.

Axis names used in shape comments throughout symref:
    nf     frames                nloc   local (centre) atoms
    nnei   neighbour slots = sum(sel)   M1     embedding width (neuron[-1])
    M2     axis_neuron           nin/nout  layer widths          B   batch rows

One layer maps ``x`` (B x nin) to ``y`` (B x nout):

.. math::

    z = x W + b, \qquad h = \phi(z)\odot d, \qquad
    y = h + \begin{cases} x & n_{out} = n_{in} \text{ and resnet}\\
                          [x, x] & n_{out} = 2 n_{in} \text{ and resnet}\\
                          0 & \text{otherwise}\end{cases}

with :math:`\phi` the layer's activation (``Layer.activation``, any name of
:data:`symref.reference.activation.ACTIVATIONS`: tanh, gelu, relu, softplus..., the
identity for a linear output layer) and the "timestep" :math:`d` = ``idt`` (ones when
absent, i.e. ``resnet_dt`` false or the widths do not allow a shortcut).  Derivatives,
with :math:`\phi'` from the same table (for tanh :math:`1 - \tanh^2 z`):

.. math::

    \bar h = \bar y, \quad \bar z = \bar h \odot d \odot \phi'(z), \quad
    \bar W = x^\top \bar z, \quad \bar b = \textstyle\sum_B \bar z, \quad
    \bar d = \textstyle\sum_B \bar y\odot\phi(z),\\
    \bar x = \bar z W^\top + \{\bar y,\ \bar y_{[:n]}+\bar y_{[n:]},\ 0\}.

``mlp_forward`` returns ``(out, cache)`` and ``mlp_backward(dout, cache)``
returns ``(dx, grads)`` with ``grads`` a list of dicts ``{"w", "b", "idt"}``
per layer (entries ``None`` where the layer has no such parameter); the dual
twins return ``((xbar, xdbar), grads)`` (the package-wide convention,
:mod:`symref.reference`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symref.reference.activation import activation_fn, canonical_activation


@dataclass
class Layer:
    """One dense layer. ``w``: nin x nout, ``b``: nout or None, ``idt``: nout or None."""

    w: np.ndarray
    b: np.ndarray | None
    idt: np.ndarray | None = None
    activation: str = "tanh"
    resnet: bool = True

    def __post_init__(self):
        self.activation = canonical_activation(self.activation, "layer")
        self.w = np.asarray(self.w)
        if self.w.ndim != 2:
            raise ValueError(f"layer weight must be 2-D (nin x nout), got shape {self.w.shape}")
        nout = self.w.shape[1]
        for name in ("b", "idt"):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=self.w.dtype).reshape(-1)
                if v.shape != (nout,):
                    raise ValueError(f"layer {name} must have shape ({nout},), got {v.shape}")
                setattr(self, name, v)

    @property
    def nin(self) -> int:
        return self.w.shape[0]

    @property
    def nout(self) -> int:
        return self.w.shape[1]

    @property
    def shortcut(self) -> int:
        """0: no shortcut, 1: ``+x``, 2: ``+[x, x]``."""
        if not self.resnet:
            return 0
        if self.nout == self.nin:
            return 1
        if self.nout == 2 * self.nin:
            return 2
        return 0


def layer_forward(x: np.ndarray, layer: Layer, *, second: bool = False):
    """One layer: ``x`` (... x nin) -> ``y`` (... x nout); returns ``(y, cache)``.

    ``second``: also keep the second derivative phi''(z) in the cache (the dual pass
    needs it; the cache is then ``(x, h, (dh, d2h), layer)``, else ``(x, h, dh, layer)``)."""
    z = x @ layer.w  # ... x nout
    if layer.b is not None:
        z = z + layer.b
    h, dh, d2h = activation_fn(layer.activation)(z, second and layer.activation != "tanh")
    y = h * layer.idt if layer.idt is not None else h  # ... x nout
    return y + _shortcut(x, layer), (x, h, (dh, d2h) if second else dh, layer)


def _shortcut(x: np.ndarray, layer: Layer):
    """sc(x): 0, x or [x, x] (see the module docstring)."""
    sc = layer.shortcut
    if sc == 1:
        return x
    if sc == 2:
        return np.concatenate([x, x], axis=-1)
    return 0.0


def _shortcut_backward(d: np.ndarray, layer: Layer):
    """Transpose of :func:`_shortcut`: 0, d or d[:n] + d[n:]."""
    sc = layer.shortcut
    if sc == 1:
        return d
    if sc == 2:
        return d[..., :layer.nin] + d[..., layer.nin:]
    return 0.0


def layer_backward(dy: np.ndarray, cache):
    """Backward of :func:`layer_forward`: returns ``(dx, {"w", "b", "idt"})``.

    Leading axes of ``x`` are summed for the parameter gradients.
    """
    x, h, dh, layer = cache
    grads = {"w": None, "b": None, "idt": None}
    if layer.idt is not None:
        grads["idt"] = (dy * h).reshape(-1, layer.nout).sum(axis=0)
        dz = dy * layer.idt
    else:
        dz = dy
    if dh is not None:
        dz = dz * dh  # ... x nout
    x2 = x.reshape(-1, layer.nin)
    dz2 = dz.reshape(-1, layer.nout)
    grads["w"] = x2.T @ dz2  # nin x nout
    if layer.b is not None:
        grads["b"] = dz2.sum(axis=0)
    dx = dz @ layer.w.T + _shortcut_backward(dy, layer)  # ... x nin
    return dx, grads


def mlp_forward(x: np.ndarray, layers: list[Layer]):
    """Apply ``layers`` in order. Returns ``(out, cache)``."""
    caches = []
    for layer in layers:
        x, c = layer_forward(x, layer)
        caches.append(c)
    return x, caches


def mlp_hidden_outputs(cache) -> list[np.ndarray]:
    """The outputs ``y`` of every layer but the last (... x nout_k each), read from the
    cache of :func:`mlp_forward`: layer k's output is layer k+1's input ``x``."""
    return [c[0] for c in cache[1:]]


def mlp_backward(dout: np.ndarray, cache):
    """Backward of :func:`mlp_forward`: ``(dx, [grads per layer])``."""
    grads = [None] * len(cache)
    for k in range(len(cache) - 1, -1, -1):
        dout, grads[k] = layer_backward(dout, cache[k])
    return dout, grads


def init_mlp(
    rng: np.random.Generator,
    nin: int,
    neuron: list[int],
    *,
    resnet_dt: bool,
    out_dim: int | None = None,
    dtype=np.float64,
    bias_std: float = 1.0,
    activation: str = "tanh",
) -> list[Layer]:
    """Random network in deepmd-kit's layout.

    Hidden layers ``nin -> neuron[0] -> ... -> neuron[-1]`` (``activation``, residual
    where widths allow, ``idt`` when ``resnet_dt`` and a shortcut exists);
    if ``out_dim`` is given, a final linear layer ``neuron[-1] -> out_dim``
    without shortcut (a fitting net).  Weights ~ N(0, 1/(nin+nout)), biases
    ~ N(0, bias_std²), ``idt`` ~ N(0.1, 0.001²) as deepmd-kit does.
    """
    layers = []
    n_in = nin
    for n_out in neuron:
        w = rng.normal(size=(n_in, n_out)) / np.sqrt(n_in + n_out)
        b = rng.normal(size=n_out) * bias_std
        has_sc = n_out == n_in or n_out == 2 * n_in
        idt = rng.normal(loc=0.1, scale=0.001, size=n_out) if (resnet_dt and has_sc) else None
        layers.append(Layer(w.astype(dtype), b.astype(dtype),
                            None if idt is None else idt.astype(dtype), activation, True))
        n_in = n_out
    if out_dim is not None:
        w = rng.normal(size=(n_in, out_dim)) / np.sqrt(n_in + out_dim)
        b = rng.normal(size=out_dim) * bias_std
        layers.append(Layer(w.astype(dtype), b.astype(dtype), None, "linear", False))
    return layers


def mlp_astype(layers: list[Layer], dtype) -> list[Layer]:
    """Copy of ``layers`` with every parameter cast to ``dtype``."""
    out = []
    for ly in layers:
        out.append(Layer(ly.w.astype(dtype),
                         None if ly.b is None else ly.b.astype(dtype),
                         None if ly.idt is None else ly.idt.astype(dtype),
                         ly.activation, ly.resnet))
    return out


# ------------------------------------------------------------------ dual mode
# Forward-over-reverse for loss gradients that contain forces: a tangent
# ``xd`` (a directional derivative dx/dε) is carried through the forward pass,
# and the backward pass returns parameter gradients of ``<ybar, y> + <ydbar, yd>``.


def layer_forward_dual(x: np.ndarray, xd: np.ndarray, layer: Layer):
    r"""One layer and its tangent: ``(y, yd, cache)``.

    .. math::  \dot z = \dot x W,\quad \dot h = \phi'(z)\odot\dot z,\quad
               \dot y = \dot h\odot d + \mathrm{sc}(\dot x)
    """
    y, cache = layer_forward(x, layer, second=True)
    dh = cache[2][0]
    zd = xd @ layer.w  # ... x nout
    hd = zd * dh if dh is not None else zd
    yd = hd * layer.idt if layer.idt is not None else hd
    return y, yd + _shortcut(xd, layer), (cache, xd, zd, hd)


def layer_backward_dual(ybar: np.ndarray, ydbar: np.ndarray, dcache):
    r"""Backward of :func:`layer_forward_dual`: ``((xbar, xdbar), grads)``.

    The tangent branch gives
    :math:`\bar{\dot h} = \bar{\dot y}\odot d`,
    :math:`\bar{\dot z} = \bar{\dot h}\odot\phi'`,
    :math:`\bar z = \bar h\odot\phi' + \bar{\dot h}\odot\dot z\odot\phi''`,
    :math:`\bar W \mathrel{+}= \dot x^\top \bar{\dot z}`,
    :math:`\bar{\dot x} = \bar{\dot z} W^\top + \mathrm{sc}'(\bar{\dot y})`;
    then the primal branch as in :func:`layer_backward`.  For tanh,
    :math:`\phi'' = -2h\phi'` is applied as :math:`\bar h \mathrel{+}= -2h\,\bar{\dot h}
    \odot\dot z`, :math:`\bar z = \bar h\odot\phi'` (the original operation order,
    which keeps tanh results bit-for-bit); other activations use :math:`\phi''` from
    :mod:`symref.reference.activation`.
    """
    cache, xd, zd, hd = dcache
    x, h, (dh, d2h), layer = cache
    nin, nout = layer.nin, layer.nout
    idt = layer.idt
    grads = {"w": None, "b": None, "idt": None}
    hdbar = ydbar * idt if idt is not None else ydbar  # ... x nout
    hbar = ybar * idt if idt is not None else ybar
    if idt is not None:
        grads["idt"] = ((ydbar * hd).reshape(-1, nout).sum(axis=0)
                        + (ybar * h).reshape(-1, nout).sum(axis=0))
    if layer.activation == "tanh":
        zdbar = hdbar * dh
        hbar = hbar + hdbar * zd * (-2.0 * h)
        zbar = hbar * dh
    elif dh is not None:
        zdbar = hdbar * dh  # ... x nout
        zbar = hbar * dh
        if d2h is not None:
            zbar = zbar + hdbar * zd * d2h
    else:
        zdbar, zbar = hdbar, hbar
    xdbar = zdbar @ layer.w.T + _shortcut_backward(ydbar, layer)
    xbar = zbar @ layer.w.T + _shortcut_backward(ybar, layer)
    grads["w"] = xd.reshape(-1, nin).T @ zdbar.reshape(-1, nout) \
        + x.reshape(-1, nin).T @ zbar.reshape(-1, nout)
    if layer.b is not None:
        grads["b"] = zbar.reshape(-1, nout).sum(axis=0)
    return (xbar, xdbar), grads


def mlp_forward_dual(x: np.ndarray, xd: np.ndarray, layers: list[Layer]):
    """Apply ``layers`` to ``x`` and its tangent ``xd``: ``(out, outd, cache)``."""
    caches = []
    for layer in layers:
        x, xd, c = layer_forward_dual(x, xd, layer)
        caches.append(c)
    return x, xd, caches


def mlp_backward_dual(ybar: np.ndarray, ydbar: np.ndarray, cache):
    """Backward of :func:`mlp_forward_dual`: ``((xbar, xdbar), [grads per layer])``."""
    grads = [None] * len(cache)
    for k in range(len(cache) - 1, -1, -1):
        (ybar, ydbar), grads[k] = layer_backward_dual(ybar, ydbar, cache[k])
    return (ybar, ydbar), grads
