"""symref train is dp --pt train, step for step (issue 25): from one frozen model, on one
system whose frames all form the batch (no sampling), 12 Adam steps of both codes give the
same lcurve.out (every value to deepmd-kit's printed precision) and the same final model
(outputs to 1e-8 relative), while training moves the outputs by far more than that."""
from __future__ import annotations

import json

import numpy as np
import pytest

from symref import cli

pytestmark = [pytest.mark.deepmd, pytest.mark.data, pytest.mark.slow]

#: energy model: se_e2_a + energy fitting, e/f/v prefactors moving with the learning rate
#: (exp decay every 5 steps), 12 steps, disp_freq 1; batch = the system's 3 frames
ENERGY_INPUT = {
    "model": {"type_map": ["O", "H"],
              "descriptor": {"type": "se_e2_a", "rcut": 4.0, "rcut_smth": 0.5, "sel": [30, 60],
                             "neuron": [4, 8], "axis_neuron": 4, "seed": 1},
              "fitting_net": {"neuron": [16, 16], "resnet_dt": True, "seed": 1}},
    "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-5, "decay_steps": 5},
    "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 1, "start_pref_f": 1000,
             "limit_pref_f": 1, "start_pref_v": 0.5, "limit_pref_v": 2},
    "training": {"training_data": {"systems": None, "batch_size": 3}, "numb_steps": 12,
                 "seed": 10, "disp_file": "lcurve.out", "disp_freq": 1, "save_freq": 100}}

NFRAMES = 3


def _water_system(shared_data, path):
    """The first 3 frames of water/data_0 (64 H2O) with energy, force, and a symmetric
    synthetic virial label (the data has none), so that all three loss terms train."""
    from symref.io.data import System, load_systems, save_system

    src = load_systems([shared_data / "water" / "data_0"], ["O", "H"])[0]
    rng = np.random.default_rng(0)
    vir = rng.normal(scale=2.0, size=(NFRAMES, 3, 3))
    save_system(System(type_map=["O", "H"], atype=src.atype, coord=src.coord[:NFRAMES],
                       box=src.box[:NFRAMES], energy=src.energy[:NFRAMES],
                       force=src.force[:NFRAMES], virial=vir + vir.transpose(0, 2, 1),
                       name=str(path)), path)


def _frozen_start(cfg, input_file, system, folder, dp):
    """The starting model: built from the input's model section by symref, statistics of
    the system, written as .dp and converted to deepmd-kit's frozen .pth by
    ``dp convert-backend``."""
    import symref
    from symref.io.data import load_systems
    from symref.io.inputfile import read_input
    from symref.model.build import build_model
    from symref.train.stats import compute_statistics, stat_frames

    mc = read_input(input_file)[0]["model"]
    model = build_model(mc, seed=1)
    systems = load_systems([system], mc["type_map"])
    compute_statistics(model, stat_frames(systems, data_stat_nbatch=10, batch_size=NFRAMES))
    symref.save_model(model, folder / "init.dp")
    dp.run_dp(["convert-backend", "init.dp", "init.pth"], cwd=folder)
    return model


def _rows(path):
    return [ln.split() for ln in path.read_text().splitlines() if not ln.startswith("#")]


def test_energy_model_trains_as_dp_step_for_step(tmp_path, shared_data, dp, pt,
                                                 monkeypatch, capsys):
    """Energy (e/f/v): dp --pt train --init-frz-model init.pth and symref train
    --init-frz-model init.dp: lcurve.out identical as text (all 12 rows, every column),
    final energies, forces and virials on the 3 frames within 1e-8 of deepmd-kit's
    (max |difference| / max |value|), and each moved by more than 1e-5 from the start."""
    _water_system(shared_data, tmp_path / "sys")
    cfg = json.loads(json.dumps(ENERGY_INPUT))
    cfg["training"]["training_data"]["systems"] = [str(tmp_path / "sys")]
    (tmp_path / "dp").mkdir()
    (tmp_path / "sr").mkdir()
    for d in ("dp", "sr"):
        (tmp_path / d / "input.json").write_text(json.dumps(cfg))
    start = _frozen_start(cfg, tmp_path / "sr" / "input.json", tmp_path / "sys", tmp_path, dp)
    dp.run_dp(["--pt", "train", "input.json", "--init-frz-model", "../init.pth",
               "--skip-neighbor-stat"], cwd=tmp_path / "dp")
    monkeypatch.chdir(tmp_path / "sr")
    assert cli.main(["train", "input.json", "--init-frz-model", "../init.dp",
                     "-o", "final.yaml"]) == 0
    capsys.readouterr()

    want, got = _rows(tmp_path / "dp" / "lcurve.out"), _rows(tmp_path / "sr" / "lcurve.out")
    assert len(want) == 12 and got == want
    assert (tmp_path / "sr" / "lcurve.out").read_text().splitlines()[0] == \
        (tmp_path / "dp" / "lcurve.out").read_text().splitlines()[0]

    import symref
    from deepmd.infer import DeepPot
    from symref.io.data import load_systems

    s = load_systems([tmp_path / "sys"], ["O", "H"])[0]
    e, f, v = DeepPot(str(tmp_path / "dp" / "model.ckpt.pt")).eval(
        s.coord.reshape(NFRAMES, -1), s.box.reshape(NFRAMES, 9), s.atype)[:3]
    ours = symref.load_model(tmp_path / "sr" / "final.yaml").evaluate(s.coord, s.atype, s.box)
    before = start.evaluate(s.coord, s.atype, s.box)
    for key, ref in (("energy", e), ("forces", f), ("virial", v)):
        ref = np.asarray(ref).reshape(np.shape(ours[key]))
        dev = np.abs(ours[key] - ref).max() / np.abs(ref).max()
        moved = np.abs(before[key] - ref).max() / np.abs(ref).max()
        print(f"{key}: max deviation from dp {dev:.2e} (relative), moved by training "
              f"{moved:.2e}")
        assert dev <= 1e-8, (key, dev)
        assert moved > 1e-5, (key, moved)
