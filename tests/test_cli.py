"""The `symref check` command: built-in default passes; bad input gives exit 2 and a message."""

import pytest

from symref import cli


def test_check_builtin_default_passes(capsys):
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert "forces_fd" in out and "virial_fd" in out and "image_wrap/energy" in out
    assert "numba vs numpy/forces" in out  # the fast path is checked against the reference
    assert "all checks passed" in out


def test_check_backend_option(capsys, monkeypatch):
    """--backend numpy runs the checks on the reference (no agreement rows); a fast path
    that drifts from the reference fails the default run."""
    assert cli.main(["check", "--backend", "numpy"]) == 0
    out = capsys.readouterr().out
    assert "backend numpy" in out and "numba vs numpy" not in out
    from symref.fast import cpu as fastpath
    orig = fastpath.evaluate_frame

    def drifting(*a, **k):
        out = orig(*a, **k)
        out["forces"] = out["forces"] * (1 + 1e-8)
        return out
    monkeypatch.setattr(fastpath, "evaluate_frame", drifting)
    assert cli.main(["check"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_check_reports_failure_of_a_broken_model(capsys, monkeypatch):
    """The command's exit status follows the checks: break the virial and it must fail."""
    from symref.model.deeppot import DeepPot
    orig = DeepPot.evaluate

    def broken(self, *a, **k):
        out = orig(self, *a, **k)
        out["virial"] = out["virial"] * 1.01
        return out
    monkeypatch.setattr(DeepPot, "evaluate", broken)
    assert cli.main(["check"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_check_missing_model_file(capsys, tmp_path):
    assert cli.main(["check", str(tmp_path / "nope.dp")]) == 2
    assert "nope.dp" in capsys.readouterr().err


def test_check_bad_system_folder(capsys, tmp_path):
    (tmp_path / "type.raw").write_text("0 1\n")
    assert cli.main(["check", "--system", str(tmp_path)]) == 2
    assert "set.*" in capsys.readouterr().err


def _write_npy_system(root, coord, atype, box, energy, force, type_map):
    import numpy as np
    (root / "set.000").mkdir(parents=True)
    (root / "type.raw").write_text("\n".join(str(t) for t in atype) + "\n")
    (root / "type_map.raw").write_text("\n".join(type_map) + "\n")
    nf = coord.shape[0]
    np.save(root / "set.000" / "coord.npy", coord.reshape(nf, -1))
    np.save(root / "set.000" / "box.npy", box.reshape(nf, 9))
    np.save(root / "set.000" / "energy.npy", energy)
    np.save(root / "set.000" / "force.npy", force.reshape(nf, -1))


def test_train_command_end_to_end(tmp_path, capsys, monkeypatch):
    """`symref train input.json`: keys without effect reported, lcurve/checkpoint/model
    written, and the written model loads and evaluates."""
    import json

    import numpy as np

    from symref import load_model
    from symref.io.data import make_crystal
    from symref.model.build import demo_model

    s = make_crystal(seed=2)
    teacher = demo_model({"type_map": ["A", "B"],
                          "descriptor": {"type": "se_e2_a", "rcut": 3.0, "sel": [40, 40],
                                         "neuron": [4, 8], "axis_neuron": 2},
                          "fitting_net": {"neuron": [8]}}, seed=1)
    rng = np.random.default_rng(0)
    coord = s.coord + rng.normal(scale=0.05, size=(3,) + s.coord.shape[1:])
    box = np.repeat(s.box, 3, axis=0)
    ev = teacher.evaluate(coord, s.atype, box)
    _write_npy_system(tmp_path / "sys", coord, s.atype, box, ev["energy"], ev["forces"],
                      ["B", "A"])  # the data names its types the other way round
    inp = {"model": {"type_map": ["A", "B"],
                     "descriptor": {"type": "se_e2_a", "rcut": 3.0, "rcut_smth": 0.5,
                                    "sel": [40, 40], "neuron": [4, 8], "axis_neuron": 2},
                     "fitting_net": {"neuron": [8]}},
           "learning_rate": {"start_lr": 1e-3, "stop_lr": 1e-4, "decay_steps": 1},
           "loss": {"start_pref_e": 1.0, "limit_pref_e": 1.0, "start_pref_f": 10.0,
                    "limit_pref_f": 10.0},
           "training": {"training_data": {"systems": ["sys"], "batch_size": 2},
                        "validation_data": {"systems": ["sys"]},
                        "numb_steps": 3, "seed": 1, "disp_freq": 1, "save_freq": 2,
                        "tensorboard": True}}
    (tmp_path / "input.json").write_text(json.dumps(inp))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "input.json", "-o", "out.yaml"]) == 0
    cap = capsys.readouterr()
    assert "training.tensorboard = True has no effect in symref" in cap.err
    assert "step       3" in cap.out
    lines = (tmp_path / "lcurve.out").read_text().splitlines()
    assert lines[0].startswith("# step") and len(lines) == 5  # header, nan note, 3 rows
    model = load_model(tmp_path / "out.yaml")
    # the same model also as the deepmd-kit .dp file
    np.testing.assert_array_equal(load_model(tmp_path / "out.dp").evaluate(coord, s.atype, box)
                                  ["forces"], model.evaluate(coord, s.atype, box)["forces"])
    assert np.isfinite(model.evaluate(coord, np.array([1, 0])[s.atype] * 0 + s.atype, box)["energy"]).all()
    assert cli.main(["train", str(tmp_path / "missing.json")]) == 2
    capsys.readouterr()
    # symref test / symref plot on the result
    assert cli.main(["test", "-m", "out.yaml", "-s", "sys", "--plot", "parity.png"]) == 0
    out = capsys.readouterr().out
    assert "energy/atom" in out and "force" in out
    assert (tmp_path / "parity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cli.main(["plot", "lcurve.out"]) == 0
    assert (tmp_path / "lcurve.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "bad.out").write_text("1 2 3\n")
    assert cli.main(["plot", "bad.out"]) == 2
    # L-BFGS with a held-out fraction of the training frames instead of validation_data
    capsys.readouterr()
    inp["optimizer"] = {"type": "lbfgs", "maxiter": 2}
    (tmp_path / "input.json").write_text(json.dumps(inp))
    assert cli.main(["train", "input.json", "--valid-fraction", "0.34"]) == 2
    assert "--valid-fraction and validation_data.systems" in capsys.readouterr().err
    del inp["training"]["validation_data"]
    (tmp_path / "input.json").write_text(json.dumps(inp))
    assert cli.main(["train", "input.json", "--valid-fraction", "0.34", "-o", "l.json"]) == 0
    out = capsys.readouterr().out
    assert "2 frames; 1 validation system(s), 1 frames" in out and "lbfgs iter" in out
    assert (tmp_path / "l.dp").exists() and (tmp_path / "model.ckpt.json").exists()


def test_train_rejects_a_bad_time_limit(tmp_path, capsys):
    import json

    inp = {"model": {"type_map": ["A"], "descriptor": {"type": "se_e2_a"}, "fitting_net": {}},
           "learning_rate": {"start_lr": 1e-3},
           "training": {"training_data": {"systems": ["sys"]}, "numb_steps": 1},
           "optimizer": {"type": "adam", "time_limit": "soon"}}
    (tmp_path / "input.json").write_text(json.dumps(inp))
    assert cli.main(["train", str(tmp_path / "input.json")]) == 2
    err = capsys.readouterr().err
    assert "optimizer.time_limit: expected float or none, got str" in err and "input.json" in err


def test_test_refuses_a_non_positive_frame_count(tmp_path, capsys):
    """`symref test -n -1` (or 0) is an argument error; before, -1 silently dropped the
    last frame of every system."""
    for n in ("-1", "0", "two"):
        with pytest.raises(SystemExit) as e:
            cli.main(["test", "-m", "m.yaml", "-s", "sys", "-n", n])
        assert e.value.code == 2
        assert "expected an integer >= 1" in capsys.readouterr().err


def test_check_maps_the_systems_types_by_name(tmp_path, capsys):
    """`symref check` on C/H/O data with an O/H model: an error naming the element the
    model lacks (before: types were taken by index, C checked as O)."""
    import symref
    from symref.io.data import make_molecule, save_system
    from symref.model.build import demo_model

    model = demo_model({"type_map": ["O", "H"],
                        "descriptor": {"type": "se_e2_a", "rcut": 3.0, "sel": [20, 20],
                                       "neuron": [4, 8], "axis_neuron": 2},
                        "fitting_net": {"neuron": [8]}}, seed=1)
    symref.save_model(model, tmp_path / "m.yaml")
    s = make_molecule(natoms=6, ntypes=3, seed=0)
    s.type_map = ["C", "H", "O"]
    save_system(s, tmp_path / "sys")
    assert cli.main(["check", str(tmp_path / "m.yaml"), "--system", str(tmp_path / "sys")]) == 2
    assert "element(s) ['C'] are not in the model's type_map ['O', 'H']" in capsys.readouterr().err
