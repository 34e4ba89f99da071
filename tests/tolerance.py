"""The tests' comparisons of computed arrays with a reference, in one place.

``assert_close(a, b, rtol, atol)``
    norm-wise: ``max|a - b| <= atol + rtol * max|b|`` (the finite-difference checks).
``assert_allclose_scaled(actual, ref, rtol, atol, floor=None, scale_of=None)``
    elementwise, as ``numpy.testing.assert_allclose``:
    ``|actual - ref| <= rtol * |ref| + atol * s`` with ``s = max|ref|`` (or
    ``max|scale_of|``), raised to at least ``floor`` when one is given.  ``atol`` is thus
    relative to the size of the data: ``atol + |ref|·eps``-style bounds that hold for
    arrays of any magnitude (kernel twins, thread counts, chunkings, file round trips).
"""
import numpy as np


def assert_close(a, b, rtol, atol=0.0, what=""):
    """|a - b| <= atol + rtol * max|b| elementwise, with a readable message."""
    a, b = np.asarray(a), np.asarray(b)
    err = np.abs(a - b).max() if a.size else 0.0
    scale = np.abs(b).max() if b.size else 0.0
    assert err <= atol + rtol * scale, f"{what}: max abs err {err:.3e} > {atol:.1e} + {rtol:.1e}*{scale:.3e}"


def assert_allclose_scaled(actual, ref, rtol, atol, *, floor=None, scale_of=None, err_msg=""):
    """``numpy.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol * s)``, ``s`` =
    ``max|ref|`` (``max|scale_of|`` when given; 0 for an empty array), at least ``floor``."""
    s = np.asarray(ref if scale_of is None else scale_of)
    scale = float(np.abs(s).max()) if s.size else 0.0
    if floor is not None:
        scale = max(floor, scale)
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol * scale, err_msg=err_msg)
