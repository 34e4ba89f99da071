"""The parameter layout (symref.model.params) and the scratch arenas of the fast path."""
import ast
from pathlib import Path

import numpy as np
import pytest

from symref.fast.cpu import Arena, borrowed_arena
from symref.model.build import demo_model
from symref.model.params import (differentiated, flat_parameters, flat_vector, grad_arrays,
                                 mlp_grad_vector,
                                 mlp_vector, parameters, set_flat_vector, set_mlp_vector)
from symref.reference.nn import init_mlp

CFG = {"type_map": ["C", "H"],
       "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [6, 6],
                      "neuron": [4, 8], "axis_neuron": 2, "resnet_dt": True,
                      "type_one_side": False},
       "fitting_net": {"neuron": [8, 8], "resnet_dt": True}}
PKG = Path(__file__).resolve().parents[1] / "symref"


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement of ``path`` (function-level ones too)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_params_needs_numpy_only():
    """symref.model.params knows models by their attributes and imports numpy alone (that
    symref.fast imports neither it nor symref.train is tests/test_layout.py's layering rule)."""
    assert _imports(PKG / "model" / "params.py") <= {"__future__", "typing", "numpy"}


def test_flat_vector_roundtrip_and_size_check():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(3, 2)), rng.normal(size=4), np.zeros((1, 1, 2))]
    x = flat_vector(arrays)
    assert x.shape == (12,) and x.dtype == np.float64
    set_flat_vector(arrays, x[::-1].copy())
    np.testing.assert_array_equal(flat_vector(arrays), x[::-1])
    before = flat_vector(arrays)
    with pytest.raises(ValueError, match="needs"):
        set_flat_vector(arrays, x[:-1])
    np.testing.assert_array_equal(flat_vector(arrays), before)  # nothing written
    assert flat_vector([]).shape == (0,)


def test_mlp_vectors_share_one_layout():
    layers = init_mlp(np.random.default_rng(1), 3, [5, 5], resnet_dt=True, out_dim=1)
    theta = mlp_vector(layers)
    # a gradient equal to the parameters themselves lands where the parameters are
    grads = [{k: getattr(ly, k) for k in ("w", "b", "idt")} for ly in layers]
    np.testing.assert_array_equal(mlp_grad_vector(layers, grads), theta)
    set_mlp_vector(layers, 2 * theta)
    np.testing.assert_array_equal(mlp_vector(layers), 2 * theta)


def test_grad_arrays_match_the_parameter_layout():
    """grad_arrays: one entry per differentiated array, in order; the trained ones are
    parameters() (no fitting bias: deepmd-kit's buffer), the bias's gradient comes last."""
    model = demo_model(CFG, seed=0)
    names = [(n, a.shape) for n, a in differentiated(model)]
    assert names[:-1] == [(n, a.shape) for n, a in parameters(model)]
    assert names[-1][0] == "bias_atom_e" and "bias_atom_e" not in dict(parameters(model))
    nemb = len(model.descriptor.embeddings)
    g = grad_arrays(model, [None] * nemb, {}, np.ones_like(model.fitting.bias_atom_e))
    assert [(n, a.shape) for n, a in g.items()] == names
    assert flat_vector(g[n] for n, _ in names[:-1]).size == flat_parameters(model).size
    assert np.all(g["bias_atom_e"] == 1) and not any(g[n].any() for n, _ in names[:-1])


def test_borrowed_arenas_are_never_shared_and_are_reused():
    with borrowed_arena() as a:
        with borrowed_arena() as b:  # a concurrent user gets another arena
            assert a is not b
        buf = a.get("x", (4, 3))
        assert buf.shape == (4, 3)
    with borrowed_arena() as c, borrowed_arena() as d:
        assert {id(c), id(d)} == {id(a), id(b)}  # given back, then reused
    ws = Arena()
    first = ws.get("k", (10,))
    assert np.shares_memory(ws.get("k", (2, 5)), first)  # no new allocation when it fits
