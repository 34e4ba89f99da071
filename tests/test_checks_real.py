"""The issue's acceptance numbers on real data, through the public API and `symref check`:
FD order ~2 and <= 1e-6 after Richardson, symmetries <= 1e-12, on the 192-atom water cell with
deepmd-kit's example model size."""
import numpy as np
import pytest

import symref
from symref import cli
from symref import checks
from symref.io.data import load_system

WATER_CFG = {"type_map": ["O", "H"],
             "descriptor": {"type": "se_e2_a", "rcut": 6.0, "rcut_smth": 0.5, "sel": [46, 92],
                            "neuron": [25, 50, 100], "axis_neuron": 16, "type_one_side": False},
             "fitting_net": {"neuron": [240, 240, 240], "resnet_dt": True}}


def water_model():
    return symref.model.build.demo_model(WATER_CFG, seed=21)


@pytest.mark.slow
@pytest.mark.data
def test_water_cell_fd_and_symmetry(shared_data):
    s = load_system(shared_data / "water" / "data_0")
    coord, atype, box = s.coord[0], s.atype, s.box[0]
    calc = checks.as_calculator(water_model(), atype)
    rng = np.random.default_rng(0)
    f = checks.check_forces_fd(calc, coord, box, steps=(1e-2, 5e-3), natoms_sample=4, rng=rng)
    assert f.passed and abs(f.order - 2) < 0.3 and f.max_rel_err <= 1e-6, str(f)
    v = checks.check_virial_fd(calc, coord, box, steps=(1e-3, 5e-4))
    assert v.passed and v.max_rel_err <= 1e-6, str(v)
    sym = checks.check_symmetry(calc, coord, box, atype=atype, rng=rng)
    assert all(r.passed and r.max_rel_err <= 1e-12 for r in sym), checks.format_table(sym)


@pytest.mark.slow
@pytest.mark.data
def test_cli_on_a_model_file_and_system(shared_data, tmp_path, capsys):
    pytest.importorskip("h5py")
    path = tmp_path / "water.dp"
    symref.save_model(water_model(), path)
    assert cli.main(["check", str(path), "--system", str(shared_data / "water" / "data_3"),
                     "--sample", "2"]) == 0
    out = capsys.readouterr().out
    assert "forces_fd" in out and "image_wrap/virial" in out and "cutoff/forces" in out
