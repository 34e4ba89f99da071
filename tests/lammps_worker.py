"""Run a symref model inside LAMMPS (``run 0`` or NVE) and save what LAMMPS reports.

Used by tests/test_lammps.py and benchmarks/bench_lammps.py through
``mpiexec -n K python tests/lammps_worker.py ...``; rank 0 writes ``--out`` (npz):
``energy`` (LAMMPS's pe), ``forces`` (natoms x 3, by atom id, rotated back to the
input frame), ``virial`` (3 x 3, from ``compute pressure NULL virial``, rotated
back), ``etotal``/``pe``/``step`` of the thermo output for NVE runs, callback
statistics and timings.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

NKTV2P_METAL = 1.6021765e6  # LAMMPS's bar·Å³/eV in units metal (force.cpp)


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--frame", required=True, help="npz with coord, atype, cell, masses")
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="auto")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--dt-fs", type=float, default=0.5)
    p.add_argument("--repeat", type=int, default=1, help="run 0 this many times (timing)")
    p.add_argument("--no-fold", action="store_true", help="recompute images of own atoms")
    p.add_argument("--velocities", action="store_true", help="frame npz has 'vel' (Å/ps)")
    p.add_argument("--thermo-every", type=int, default=1,
                   help="NVE: record etotal every this many steps (runs in chunks)")
    a = p.parse_args(argv)

    from symref.io.model_file import load_model
    from symref.lammps import new_lammps, write_data

    model = load_model(a.model)
    fr = np.load(a.frame)
    coord, atype, cell = fr["coord"], fr["atype"], fr["cell"]
    lmp = new_lammps()
    rank = lmp.extract_setting("world_rank")
    data = a.out + ".data"
    if rank == 0:
        write_data(data, coord, atype, cell, model.type_map, masses=fr["masses"])
    comm = lmp.get_mpi_comm()
    if comm is not None:
        comm.Barrier()
    from symref.lammps import lammps_cell

    _, q = lammps_cell(cell)
    lmp.commands_string(f"""
units metal
atom_style atomic
atom_modify map array
boundary p p p
read_data {data}
neighbor 2.0 bin
neigh_modify every 1 delay 0 check yes
""")
    from symref.lammps import attach

    fix = attach(lmp, model, mode=a.mode, fold=not a.no_fold)
    if a.velocities:
        v = fr["vel"] @ q  # Å/ps, rotated like the positions
        ids = np.asarray(lmp.numpy.extract_atom("id"), dtype=np.int64)[:lmp.extract_global(
            "nlocal")]
        vl = lmp.numpy.extract_atom("v")
        vl[:len(ids)] = v[ids - 1]
    lmp.commands_string(f"""
compute vir all pressure NULL virial
thermo_style custom step pe ke etotal c_vir[1] c_vir[2] c_vir[3] c_vir[4] c_vir[5] c_vir[6]
thermo_modify norm no format float %.17g
timestep {a.dt_fs / 1000.0!r}
""")
    times = []
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        lmp.command("run 0")
        times.append(time.perf_counter() - t0)
    if fix.error is not None:
        raise fix.error
    pe = lmp.get_thermo("pe")
    vol = lmp.get_thermo("vol")
    pvec = np.array(lmp.numpy.extract_compute("vir", 0, 1), dtype=np.float64)  # bar
    f = lmp.gather_atoms("f", 1, 3)
    forces = np.ctypeslib.as_array(f).reshape(-1, 3) @ q.T
    pv = pvec * vol / NKTV2P_METAL  # xx yy zz xy xz yz
    w = np.array([[pv[0], pv[3], pv[4]], [pv[3], pv[1], pv[5]], [pv[4], pv[5], pv[2]]])
    virial = q @ w @ q.T
    trace = {"step": [], "pe": [], "etotal": []}
    if a.steps:
        lmp.command("fix nve all nve")
        lmp.command("thermo 1")

        def grab():
            trace["step"].append(lmp.get_thermo("step"))
            trace["pe"].append(lmp.get_thermo("pe"))
            trace["etotal"].append(lmp.get_thermo("etotal"))

        grab()  # step 0, from the run 0 above
        every = max(1, a.thermo_every)
        t0 = time.perf_counter()
        for k in range(a.steps // every):
            lmp.command(f"run {every} pre {'yes' if k == 0 else 'no'} post no")
            grab()
            if rank == 0 and (k + 1) % max(1, a.steps // every // 10) == 0:
                print(f"[lammps_worker] step {(k + 1) * every}/{a.steps} "
                      f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    st = fix.stats
    if comm is not None:
        from mpi4py import MPI

        stats = comm.gather({"calls": st.calls, "seconds": st.seconds,
                             "model_seconds": st.model_seconds, "local": st.local,
                             "shell": st.shell, "ghosts": st.ghosts,
                             "modes": sorted(st.modes)}, root=0)
        _ = MPI
    else:
        stats = [{"calls": st.calls, "seconds": st.seconds, "model_seconds": st.model_seconds,
                  "local": st.local, "shell": st.shell, "ghosts": st.ghosts,
                  "modes": sorted(st.modes)}]
    if rank == 0:
        np.savez(a.out, energy=pe, forces=forces, virial=virial, run0_seconds=np.array(times),
                 nprocs=lmp.extract_setting("world_size"), stats=json.dumps(stats),
                 **{k: np.array(v, dtype=np.float64) for k, v in trace.items()})
    lmp.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
