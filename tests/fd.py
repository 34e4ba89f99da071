"""Central finite differences used by the unit tests (independent of symref.checks).

The comparisons that go with them are in ``tests/tolerance.py``."""
import numpy as np


def num_grad(f, x, h=1e-6):
    """d f / d x by central differences; ``f`` returns a scalar, ``x`` any shape (float64)."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    gf = g.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + h
        fp = f(x)
        flat[k] = old - h
        fm = f(x)
        flat[k] = old
        gf[k] = (fp - fm) / (2 * h)
    return g


def num_grad_richardson(f, x, h=1e-3):
    """Richardson-extrapolated central differences: (4 D(h/2) - D(h)) / 3, error O(h^4)."""
    return (4 * num_grad(f, x, h / 2) - num_grad(f, x, h)) / 3


def num_grad_inplace(f, arr, h=1e-6):
    """d f() / d arr by central differences, where ``f`` takes no argument and reads
    ``arr`` (a parameter array held by a model, e.g. ``layer.w``), which is perturbed
    in place and restored."""
    orig = np.array(arr, dtype=np.float64)

    def at(v):
        arr[...] = v
        return f()

    try:
        return num_grad(at, orig, h)
    finally:
        arr[...] = orig
