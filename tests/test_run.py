"""symref.train.run: `symref train` builds the network dp train would build, and --restart checks."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from symref import cli


def _system(path, seed=0, nframes=3):
    """A labelled 8-atom periodic system (types A, B) from a random teacher model."""
    from dataclasses import replace

    from symref.io.data import make_crystal, save_system
    from symref.model.build import demo_model

    s = make_crystal(seed=2)
    teacher = demo_model({"type_map": ["A", "B"],
                          "descriptor": {"type": "se_e2_a", "rcut": 3.0, "sel": [40, 40],
                                         "neuron": [4, 8], "axis_neuron": 2},
                          "fitting_net": {"neuron": [8]}}, seed=1)
    rng = np.random.default_rng(seed)
    coord = s.coord + rng.normal(scale=0.05, size=(nframes,) + s.coord.shape[1:])
    box = np.repeat(s.box, nframes, axis=0)
    ev = teacher.evaluate(coord, s.atype, box)
    save_system(replace(s, coord=coord, box=box, energy=ev["energy"], force=ev["forces"],
                        type_map=["A", "B"]), path)


#: a deepmd-kit input relying on every default it can: no rcut, sel, neuron, axis_neuron,
#: type_one_side, resnet_dt, fitting neuron, stop_lr, loss
MINIMAL = {"model": {"type_map": ["A", "B"], "descriptor": {"type": "se_e2_a"},
                     "fitting_net": {}},
           "learning_rate": {"start_lr": 1e-3},
           "training": {"training_data": {"systems": ["sys"]}, "numb_steps": 1, "seed": 1}}


def _small():
    """MINIMAL with a small network (rcut 3, sel [40, 40], 4-8 / 8): quick runs."""
    cfg = copy.deepcopy(MINIMAL)
    cfg["model"]["descriptor"].update(rcut=3.0, sel=[40, 40], neuron=[4, 8])
    cfg["model"]["fitting_net"]["neuron"] = [8]
    return cfg


@pytest.mark.deepmd
def test_an_input_that_omits_keys_trains_dp_trains_network(tmp_path, monkeypatch, capsys):
    """The written .dp has the hyper-parameters deepmd-kit's normalize gives the same input
    (descriptor and fitting, every key the .dp stores), and sel from deepmd-kit's "auto" rule."""
    argcheck = pytest.importorskip("deepmd.utils.argcheck")
    from symref.io.data import load_system
    from symref.io.model_file import read_model_file
    from symref.io.neighbor_stat import auto_sel, neighbor_stat

    _system(tmp_path / "sys")
    (tmp_path / "input.json").write_text(json.dumps(MINIMAL))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "input.json", "-o", "out.dp"]) == 0
    ref = argcheck.normalize(copy.deepcopy(MINIMAL))["model"]
    got = read_model_file(tmp_path / "out.dp")["model"]
    d, f = got["descriptor"], got["fitting"]
    for k in ("rcut", "rcut_smth", "neuron", "axis_neuron", "resnet_dt", "type_one_side",
              "exclude_types", "env_protection", "set_davg_zero", "activation_function"):
        assert d[k] == ref["descriptor"][k], k
    for k in ("neuron", "resnet_dt", "activation_function", "numb_fparam", "numb_aparam"):
        assert f[k] == ref["fitting_net"][k], k
    assert got["type_map"] == ref["type_map"]
    _, most = neighbor_stat([load_system(tmp_path / "sys")], ref["descriptor"]["rcut"], 2)
    assert ref["descriptor"]["sel"] == "auto" and d["sel"] == auto_sel(most)
    assert "sel 'auto' -> " in capsys.readouterr().out


def test_restart_refuses_a_changed_model_or_type_map(tmp_path, monkeypatch, capsys):
    """--restart with a swapped type_map, or another neuron/rcut, is refused and every
    difference is named; the unchanged input restarts."""
    _system(tmp_path / "sys")
    cfg = _small()
    cfg["training"].update(numb_steps=2, save_freq=1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.json").write_text(json.dumps(cfg))
    assert cli.main(["train", "input.json"]) == 0
    bad = copy.deepcopy(cfg)
    bad["model"]["type_map"] = ["B", "A"]
    bad["model"]["descriptor"]["neuron"] = [4, 6]
    bad["model"]["descriptor"]["rcut"] = 3.5
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    capsys.readouterr()
    assert cli.main(["train", "bad.json", "--restart", "model.ckpt.json"]) == 2
    err = capsys.readouterr().err
    assert "model.type_map: checkpoint ['A', 'B'], input ['B', 'A']" in err
    assert "model.descriptor.neuron: checkpoint [4, 8], input [4, 6]" in err
    assert "model.descriptor.rcut: checkpoint 3.0, input 3.5" in err
    assert cli.main(["train", "input.json", "--restart", "model.ckpt.json"]) == 0


def test_two_runs_in_one_folder_do_not_overwrite_each_other(tmp_path, monkeypatch, capsys):
    """A run while another is alive in the folder is refused, naming the lock and the
    process (before: both wrote model.ckpt/lcurve.out); a lock left by a dead process is
    taken over with a warning; the lock is removed after the run."""
    import subprocess
    import sys

    from symref.train.run import LOCK_NAME

    _system(tmp_path / "sys")
    cfg = _small()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.json").write_text(json.dumps(cfg))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / LOCK_NAME).write_text(f"{other.pid} input.json\n")
        assert cli.main(["train", "input.json"]) == 2
        err = capsys.readouterr().err
        assert f"another symref train (process {other.pid}) is running in this folder" in err
        assert not (tmp_path / "lcurve.out").exists()
    finally:
        other.kill()
        other.wait()
    assert cli.main(["train", "input.json"]) == 0  # the lock's process is gone
    assert f"left by a run that is no longer alive (process {other.pid})" in \
        capsys.readouterr().err
    assert not (tmp_path / LOCK_NAME).exists() and (tmp_path / "lcurve.out").exists()


def test_cosine_learning_rate_drives_adam(tmp_path, monkeypatch):
    """learning_rate.type "cosine": symref train runs it; the lr column of lcurve.out is
    CosineLR's value at each displayed step."""
    from symref.train.optim import CosineLR

    _system(tmp_path / "sys")
    cfg = _small()
    cfg["learning_rate"] = {"type": "cosine", "start_lr": 1e-2, "stop_lr": 1e-4}
    cfg["training"].update(numb_steps=4, disp_freq=1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.json").write_text(json.dumps(cfg))
    assert cli.main(["train", "input.json"]) == 0
    lr = np.loadtxt(tmp_path / "lcurve.out")[:, -1]
    sched = CosineLR(start_lr=1e-2, num_steps=4, stop_lr=1e-4)
    np.testing.assert_allclose(lr, [sched.value(s) for s in range(4)], rtol=0.05)


def _trained_once(tmp_path, monkeypatch):
    """``(cfg, model)``: _small() trained one step in ``tmp_path`` (input.json, first.yaml),
    its davg then moved by 0.01 (statistics no data would give: a start must keep them)."""
    from symref.io.model_file import load_model

    _system(tmp_path / "sys")
    cfg = _small()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "input.json").write_text(json.dumps(cfg))
    assert cli.main(["train", "input.json", "-o", "first.yaml"]) == 0
    first = load_model(tmp_path / "first.yaml")
    first.descriptor.davg[...] += 0.01
    return cfg, first


def test_init_model_starts_from_a_model_file(tmp_path, monkeypatch, capsys):
    """--init-model: training starts from the file's parameters and statistics (its davg,
    which no data would give, is kept; after the one step of numb_steps 1 the parameters
    differ from the file's by one Adam step), also from a symref checkpoint, a file whose
    network differs from the input is refused by name, and --init-model with --restart is
    refused."""
    from symref.io.model_file import load_model
    from symref.model.params import flat_parameters

    cfg, first = _trained_once(tmp_path, monkeypatch)
    import symref

    symref.save_model(first, tmp_path / "init.yaml")
    capsys.readouterr()
    assert cli.main(["train", "input.json", "--init-model", "init.yaml", "-o", "second.yaml"]) == 0
    assert "starting from init.yaml" in capsys.readouterr().out
    second = load_model(tmp_path / "second.yaml")
    np.testing.assert_array_equal(second.descriptor.davg, first.descriptor.davg)
    step = np.abs(flat_parameters(second) - flat_parameters(first)).max()
    assert 0 < step < 2e-3  # one Adam step of lr 1e-3 from the file's parameters
    # a symref checkpoint (model.ckpt.json of that run): its weights, a fresh schedule
    from symref.train.fit import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "model.ckpt.json")[0]
    assert cli.main(["train", "input.json", "--init-model", "model.ckpt.json",
                     "-o", "third.yaml"]) == 0
    step = np.abs(flat_parameters(load_model(tmp_path / "third.yaml"))
                  - flat_parameters(ckpt)).max()
    assert 0 < step < 2e-3
    cfg["model"]["fitting_net"]["neuron"] = [6]
    (tmp_path / "other.json").write_text(json.dumps(cfg))
    assert cli.main(["train", "other.json", "--init-model", "init.yaml"]) == 2
    assert "model.fitting_net.neuron: model [8], input [6]" in capsys.readouterr().err
    assert cli.main(["train", "input.json", "--init-model", "init.yaml", "--restart",
                     "model.ckpt.json"]) == 2


def test_init_frz_model_keeps_the_files_statistics_and_bias(tmp_path, monkeypatch, capsys):
    """--init-frz-model (dp --pt train --init-frz-model): the file's davg/dstd, out_bias and
    bias_atom_e are kept bit for bit (no statistics, no bias change; bias_atom_e is a buffer
    in deepmd-kit, never trained) while the networks take one Adam step; a file whose
    type_map/descriptor/fitting differ is refused naming each difference; combined with
    --init-model it is refused."""
    import symref
    from symref.io.model_file import load_model
    from symref.model.params import flat_parameters

    cfg, first = _trained_once(tmp_path, monkeypatch)
    first.out_bias = first.out_bias + 0.5
    first.fitting.bias_atom_e[...] = [0.25, -0.75]
    symref.save_model(first, tmp_path / "frozen.dp")
    capsys.readouterr()
    assert cli.main(["train", "input.json", "--init-frz-model", "frozen.dp",
                     "-o", "second.yaml"]) == 0
    assert "starting from frozen.dp" in capsys.readouterr().out
    second = load_model(tmp_path / "second.yaml")
    for a, b in ((second.descriptor.davg, first.descriptor.davg),
                 (second.descriptor.dstd, first.descriptor.dstd),
                 (second.out_bias, first.out_bias),
                 (second.fitting.bias_atom_e, first.fitting.bias_atom_e)):
        np.testing.assert_array_equal(a, b)
    step = np.abs(flat_parameters(second) - flat_parameters(first)).max()
    assert 0 < step < 2e-3  # one Adam step of lr 1e-3 from the file's parameters
    cfg["model"]["type_map"] = ["A", "C"]
    cfg["model"]["fitting_net"]["neuron"] = [6]
    (tmp_path / "other.json").write_text(json.dumps(cfg))
    (tmp_path / "sys" / "type_map.raw").write_text("A\nC\n")
    assert cli.main(["train", "other.json", "--init-frz-model", "frozen.dp"]) == 2
    err = capsys.readouterr().err
    assert "--init-frz-model frozen.dp" in err
    assert "model.type_map: model ['A', 'B'], input ['A', 'C']" in err
    assert "model.fitting_net.neuron: model [8], input [6]" in err
    assert cli.main(["train", "input.json", "--init-frz-model", "frozen.dp", "--init-model",
                     "frozen.dp"]) == 2
    assert "--init-model and --init-frz-model both given" in capsys.readouterr().err


def test_seeds_are_scoped_as_deepmd_kits(tmp_path, monkeypatch):
    """descriptor.seed and fitting_net.seed seed their own streams: the same input trains
    a bit-identical model twice; another training.seed leaves the initial weights
    unchanged (it orders the data only) but changes the trained model (batch 1 of 3
    frames); another fitting_net.seed changes the fitting nets only."""
    from symref.io.inputfile import read_input
    from symref.io.model_file import load_model
    from symref.model.build import build_model
    from symref.model.params import flat_vector, mlp_arrays, parameters

    _system(tmp_path / "sys")
    monkeypatch.chdir(tmp_path)
    cfg = _small()
    cfg["model"]["descriptor"]["seed"] = 5
    cfg["model"]["fitting_net"]["seed"] = 6
    cfg["training"].update(numb_steps=3, seed=1)
    cfg["training"]["training_data"]["batch_size"] = 1

    def train(c, name):
        (tmp_path / f"{name}.json").write_text(json.dumps(c))
        assert cli.main(["train", f"{name}.json", "-o", f"{name}.yaml"]) == 0
        return flat_vector(a for _, a in parameters(load_model(tmp_path / f"{name}.yaml")))

    def initial(c):
        (tmp_path / "i.json").write_text(json.dumps(c))
        m = build_model(read_input(tmp_path / "i.json")[0]["model"], seed=c["training"]["seed"])
        return (flat_vector(a for net in m.descriptor.embeddings for a in mlp_arrays(net)),
                flat_vector(a for net in m.fitting.nets for a in mlp_arrays(net)))

    a, b = train(cfg, "a"), train(cfg, "b")
    np.testing.assert_array_equal(a, b)
    other = copy.deepcopy(cfg)
    other["training"]["seed"] = 2
    for x, y in zip(initial(cfg), initial(other)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(train(other, "c"), a)
    fit_seed = copy.deepcopy(cfg)
    fit_seed["model"]["fitting_net"]["seed"] = 7
    (d0, f0), (d1, f1) = initial(cfg), initial(fit_seed)
    np.testing.assert_array_equal(d0, d1)
    assert not np.array_equal(f0, f1)


def test_set_davg_zero_keeps_the_mean_at_zero(tmp_path, monkeypatch):
    """descriptor.set_davg_zero true (deepmd-kit): the trained model's davg is 0 and its
    dstd comes from the data; false: davg from the data too."""
    from symref.io.model_file import load_model

    _system(tmp_path / "sys")
    monkeypatch.chdir(tmp_path)
    for flag in (True, False):
        cfg = _small()
        cfg["model"]["descriptor"]["set_davg_zero"] = flag
        (tmp_path / "input.json").write_text(json.dumps(cfg))
        assert cli.main(["train", "input.json", "-o", f"m{flag}.yaml"]) == 0
        d = load_model(tmp_path / f"m{flag}.yaml").descriptor
        assert d.set_davg_zero is flag
        assert (not np.any(d.davg)) is flag and np.any(d.dstd != 1.0)


def test_stat_frames_option_picks_the_statistics_frames(tmp_path, monkeypatch, capsys):
    """symref train --stat-frames: with data_stat_nbatch 2 x batch 1 on 6 frames the
    statistics come from 2 frames: "first" gives the davg of frames 0 and 1, "random" a
    subset seeded by training.seed (another davg; the same twice), and a bad value is
    refused by the parser (exit status 2)."""
    from symref.io.data import load_system, select_frames
    from symref.io.model_file import load_model
    from symref.model.build import build_model
    from symref.io.inputfile import read_input
    from symref.train.stats import compute_statistics

    _system(tmp_path / "sys", nframes=6)
    monkeypatch.chdir(tmp_path)
    cfg = _small()
    cfg["model"]["data_stat_nbatch"] = 2
    cfg["training"].update(numb_steps=1, seed=3)
    cfg["training"]["training_data"]["batch_size"] = 1
    (tmp_path / "input.json").write_text(json.dumps(cfg))
    davg = {}
    for name, opt in (("first", "first"), ("random", "random"), ("random2", "random")):
        assert cli.main(["train", "input.json", "-o", f"{name}.yaml", "--stat-frames", opt]) == 0
        davg[name] = load_model(tmp_path / f"{name}.yaml").descriptor.davg
    capsys.readouterr()
    ref = build_model(read_input(tmp_path / "input.json")[0]["model"], seed=3)
    s = load_system(tmp_path / "sys")
    s.type_map = ["A", "B"]
    compute_statistics(ref, [select_frames(s, [0, 1])])
    np.testing.assert_array_equal(davg["first"], ref.descriptor.davg)
    assert not np.array_equal(davg["random"], davg["first"])
    np.testing.assert_array_equal(davg["random"], davg["random2"])
    with pytest.raises(SystemExit):
        cli.main(["train", "input.json", "--stat-frames", "shuffled"])
