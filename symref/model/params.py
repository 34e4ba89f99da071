r"""Trainable parameters: which arrays they are, their order, and the flat vector of them all.

Every network in symref is a list of :class:`symref.reference.nn.Layer`, each holding
``w`` (nin x nout), ``b`` (nout) and optionally ``idt`` (nout, the residual scale).
Optimisers (SciPy's L-BFGS-B, :class:`symref.train.optim.Adam`) want one float64
vector θ instead; this module is the one place that defines that layout:

* :func:`mlp_arrays` -- the arrays of a list of layers, layer by layer, ``w, b, idt``
  (absent ones skipped);
* :func:`parameters` -- the named arrays of a :class:`~symref.model.deeppot.DeepPot`
  or :class:`~symref.model.tensor.DeepTensor`: every embedding net (in the order of
  ``descriptor.embeddings``), every fitting net (in type order).  The fitting's
  per-type bias (``bias_atom_e``; ``bias_atom`` of a tensor head) is *not* one:
  deepmd-kit's PyTorch fitting registers it as a buffer, so ``dp --pt train`` never
  moves it (it only duplicates the last layer's bias, and training it too would make
  Adam move that direction twice as far);
* :func:`flat_vector` / :func:`set_flat_vector` -- θ = the concatenation of
  ``a.ravel()`` over such a list of arrays, and back;
* :func:`grad_arrays` -- the gradient of a scalar with respect to every array of
  :func:`parameters`, assembled from what the backward passes return (per-net lists
  of per-layer ``{"w", "b", "idt"}`` dicts and the bias gradient).

The statistics (``davg``, ``dstd``, ``out_bias``, ``out_std``) are not parameters.

Layering: this module needs numpy only and knows models by their attributes.  The fast
paths (:mod:`symref.fast`) never import it: :func:`symref.fast.cpu_loss.frame_grad`
returns the same per-net gradient lists as the reference, and :mod:`symref.train.loss`
turns either into named arrays here.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

_LAYER_KEYS = ("w", "b", "idt")


def mlp_arrays(layers) -> list[np.ndarray]:
    """The trainable arrays of a list of layers (references): ``w, b, idt`` per layer."""
    return [getattr(ly, k) for ly in layers for k in _LAYER_KEYS if getattr(ly, k) is not None]


def _named_mlp_arrays(prefix: str, layers) -> list[tuple[str, np.ndarray]]:
    return [(f"{prefix}.layer[{li}].{k}", getattr(ly, k)) for li, ly in enumerate(layers)
            for k in _LAYER_KEYS if getattr(ly, k) is not None]


def parameters(model) -> list[tuple[str, np.ndarray]]:
    """The trainable arrays of ``model`` (references, not copies), named, in a fixed order
    (module docstring): ``embedding[i].layer[l].{w,b,idt}``, ``fitting[t].layer[l].{w,b,idt}``
    -- deepmd-kit's trainable set (``bias_atom_e`` / ``bias_atom`` are buffers there)."""
    out = []
    for i, net in enumerate(model.descriptor.embeddings):
        out += _named_mlp_arrays(f"embedding[{i}]", net)
    for t, net in enumerate(model.fitting.nets):
        out += _named_mlp_arrays(f"fitting[{t}]", net)
    return out


def differentiated(model) -> list[tuple[str, np.ndarray]]:
    """:func:`parameters` and then the fitting's per-type bias (``bias_atom_e``, or
    ``bias_atom`` of a tensor head): every array :func:`grad_arrays` returns a
    gradient for (the bias's is tested by the gradient checks, not trained)."""
    f = model.fitting
    bias = ("bias_atom", f.bias_atom) if hasattr(f, "bias_atom") else \
        ("bias_atom_e", f.bias_atom_e)
    return parameters(model) + [bias]


def flat_vector(arrays: Iterable[np.ndarray]) -> np.ndarray:
    """θ: the arrays raveled and concatenated, as one new float64 vector."""
    parts = [np.asarray(a).reshape(-1) for a in arrays]
    if not parts:
        return np.empty(0)
    return np.concatenate(parts).astype(np.float64, copy=False)


def set_flat_vector(arrays: Sequence[np.ndarray], x) -> None:
    """Write θ = ``x`` (layout of :func:`flat_vector`) back into ``arrays`` in place.

    ``ValueError`` (nothing written) when ``x`` is not a vector of exactly the total size."""
    n = sum(a.size for a in arrays)
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (n,):
        raise ValueError(f"parameter vector has shape {x.shape}, the model needs ({n},)")
    k = 0
    for a in arrays:
        a[...] = x[k:k + a.size].reshape(a.shape)
        k += a.size


def flat_parameters(model) -> np.ndarray:
    """All trainable parameters of ``model`` (:func:`parameters`) as one float64 vector (a copy)."""
    return flat_vector(a for _, a in parameters(model))


def set_flat_parameters(model, x) -> None:
    """Write the vector ``x`` (from :func:`flat_parameters`) back into ``model`` in place."""
    set_flat_vector([a for _, a in parameters(model)], x)


def mlp_vector(layers) -> np.ndarray:
    """All parameters of a list of layers as one vector (a copy; :func:`mlp_arrays` order)."""
    return flat_vector(mlp_arrays(layers))


def set_mlp_vector(layers, theta) -> None:
    """Write ``theta`` (layout of :func:`mlp_vector`) back into ``layers`` in place."""
    set_flat_vector(mlp_arrays(layers), theta)


def mlp_grad_vector(layers, grads) -> np.ndarray:
    """Layer gradients (``[{"w", "b", "idt"}, ...]`` per layer, as
    :func:`symref.reference.nn.mlp_backward` returns them) as one vector in the layout of
    :func:`mlp_vector`."""
    return flat_vector(g[k] for ly, g in zip(layers, grads) for k in _LAYER_KEYS
                       if getattr(ly, k) is not None)


def grad_arrays(model, emb_grads, fit_grads, dbias) -> dict[str, np.ndarray]:
    """``{name: dL/dparam}`` keyed like :func:`differentiated` (zeros for parameters
    that did not enter): the trained parameters, then the fitting's bias (not trained).

    ``emb_grads``: one entry per embedding net (None for nets no pair used), each a list
    of per-layer ``{"w", "b", "idt"}`` dicts (values may be None); ``fit_grads``:
    ``{type: [per-layer dicts]}``; ``dbias``: the gradient of the output bias (ntypes, ...).
    """
    names = differentiated(model)
    out = {name: np.zeros_like(arr) for name, arr in names}
    for i, g in enumerate(emb_grads):
        if g is not None:
            for li, d in enumerate(g):
                for k, v in d.items():
                    if v is not None:
                        out[f"embedding[{i}].layer[{li}].{k}"] += v
    for t, g in fit_grads.items():
        for li, d in enumerate(g):
            for k, v in d.items():
                if v is not None:
                    out[f"fitting[{t}].layer[{li}].{k}"] += v
    out[names[-1][0]] += dbias
    return out
