"""The `symref check` command: built-in default passes; bad input gives exit 2 and a message."""

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
    from symref import fastpath
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
    from symref.models import DeepPot
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
