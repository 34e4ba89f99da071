"""``symref train`` under MPI for tests/test_parallel.py (not a test module itself).

    mpiexec -n K python tests/mpi_train_driver.py OUT INPUT.json [INPUT.json ...]

For each input file every rank runs ``symref.cli.main(["train", INPUT])`` in its own
working directory ``OUT/<input stem>/rank<r>`` (relative output paths of the input file
land there, so a file written by a rank other than 0 shows up in its folder), while
recording every loss that ``symref.train.fit.batch_loss_and_grad`` returns (bitwise) and
the squared norm of each gradient.  The records and the final parameters go to
``OUT/<input stem>_rank<r>.npz`` (outside the working folders).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def rank_from_environment() -> int:
    for var in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


def main(argv) -> int:
    out = Path(argv[0]).resolve()
    rank = rank_from_environment()
    from symref import cli
    from symref.model.params import flat_parameters
    from symref.train import fit as train

    orig = train.batch_loss_and_grad
    status = 0
    for inp in [Path(p).resolve() for p in argv[1:]]:  # before any chdir
        work = out / inp.stem / f"rank{rank}"
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)
        rec = {"loss": [], "gsq": [], "model": None}

        def recording(model, systems, pref, *a, rec=rec, **k):
            loss, g = orig(model, systems, pref, *a, **k)
            rec["loss"].append(loss)
            rec["gsq"].append(float(g @ g))
            rec["model"] = model  # updated in place by the optimisers
            return loss, g

        train.batch_loss_and_grad = recording
        try:
            rc = cli.main(["train", str(inp)])
        finally:
            train.batch_loss_and_grad = orig
        np.savez(out / f"{inp.stem}_rank{rank}.npz", loss=np.array(rec["loss"]),
                 gsq=np.array(rec["gsq"]), x=flat_parameters(rec["model"]), rc=rc)
        status = status or rc
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
