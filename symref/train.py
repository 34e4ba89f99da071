r"""Fitting a DeepPot to labelled frames with SciPy's L-BFGS on the exact loss gradient.

The objective is the loss of :mod:`symref.loss` averaged over every frame of
every system (full batch, fixed prefactors), as a function of the flat vector
of all trainable parameters (:func:`flat_parameters`; order of
:func:`symref.loss.parameters`).  ``scipy.optimize.minimize(method="L-BFGS-B",
jac=True)`` drives it.  Deterministic: the same data, seed and thread count
give the same iterates.
"""
from __future__ import annotations

import time

import numpy as np

from .loss import LossPrefactors, energy_loss_and_grad, parameters


def flat_parameters(model) -> np.ndarray:
    """All trainable parameters as one float64 vector (a copy)."""
    return np.concatenate([a.reshape(-1) for _, a in parameters(model)]).astype(np.float64)


def set_flat_parameters(model, x: np.ndarray) -> None:
    """Write the vector ``x`` (from :func:`flat_parameters`) back into ``model`` in place."""
    params = parameters(model)
    n = sum(a.size for _, a in params)
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (n,):
        raise ValueError(f"parameter vector has shape {x.shape}, the model needs ({n},)")
    k = 0
    for _, a in params:
        a[...] = x[k:k + a.size].reshape(a.shape)
        k += a.size


def batch_loss_and_grad(model, systems, pref: LossPrefactors = LossPrefactors()):
    """Loss and flat gradient averaged over all frames of ``systems``."""
    nframes = sum(s.nframes for s in systems)
    if nframes == 0:
        raise ValueError("no frames to fit")
    total, grad = 0.0, np.zeros(sum(a.size for _, a in parameters(model)))
    names = [n for n, _ in parameters(model)]
    for s in systems:
        if s.energy is None or s.force is None:
            raise ValueError(f"{s.name or 'system'}: energy and force labels are needed")
        virial = s.virial if pref.pref_v else None
        loss, g = energy_loss_and_grad(model, s.coord, s.atype, s.box, s.energy, s.force,
                                       virial, pref)
        w = s.nframes / nframes
        total += w * loss
        grad += w * np.concatenate([g[n].reshape(-1) for n in names])
    return total, grad


def fit_lbfgs(model, systems, pref: LossPrefactors = LossPrefactors(), *, maxiter: int = 100,
              progress=print, gtol: float = 1e-12):
    """Minimise the loss over ``systems`` in place with L-BFGS-B; returns SciPy's result.

    ``progress(line)`` gets one line per iteration (iteration, loss, elapsed);
    pass ``None`` to silence it.
    """
    from scipy.optimize import minimize

    t0 = time.perf_counter()
    state = {"it": 0}

    def fun(x):
        set_flat_parameters(model, x)
        f, g = batch_loss_and_grad(model, systems, pref)
        state["last"] = f  # the accepted point is the last one evaluated
        return f, g

    def callback(xk):
        state["it"] += 1
        if progress is not None:
            progress(f"lbfgs iter {state['it']:5d}  loss {state['last']:.6e}  "
                     f"elapsed {time.perf_counter() - t0:.1f} s")

    res = minimize(fun, flat_parameters(model), jac=True, method="L-BFGS-B", callback=callback,
                   options={"maxiter": maxiter, "gtol": gtol})
    set_flat_parameters(model, res.x)
    return res
