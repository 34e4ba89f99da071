r"""``symref train input.json``: build (or restart) a model, fit it, save it.

:func:`train_from_input` is the whole command; :mod:`symref.cli` only parses the
arguments.  Steps, as deepmd-kit's ``dp train``:

1. read ``input.json`` (:func:`symref.io.inputfile.read_input`: unknown keys are
   warnings), build the model with ``training.seed``;
2. load the training systems, and validation systems or a held-out fraction
   (``valid_fraction``) of every training system;
3. statistics (``davg``/``dstd``, the energy bias; tensor shift) from deepmd-kit's
   sample of frames, unless restarting from a checkpoint;
4. fit: ``optimizer.type`` ``"lbfgs"`` (:func:`symref.train.fit.fit_lbfgs`, the limit
   prefactors) or Adam (:func:`symref.train.fit.fit_adam`, ``learning_rate`` schedule,
   prefactors from start to limit);
5. rank 0 writes the model file (and a ``.dp`` twin for deepmd-kit when it can).

Under MPI (``mpi=True``, or a launcher announcing several ranks) every rank runs
this function; the frames of each batch are shared (:mod:`symref.train.parallel`),
every rank starts from rank 0's parameters and statistics, rank 0 alone prints and
writes files, and an error on one rank aborts all of them (exit status 2).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def train_from_input(input_file, output="model.yaml", *, restart=None,
                     valid_fraction: float = 0.0, mpi: bool = False) -> int:
    """Run ``symref train``: fit the model of ``input_file`` (deepmd-kit ``input.json``)
    and write it to ``output`` (``.yaml``, ``.json``, or ``.dp``).

    ``restart``: a checkpoint to continue from.  ``valid_fraction``: hold out this
    fraction of every training system's frames for validation (seeded by
    ``training.seed``; instead of ``validation_data``).  ``mpi``: use MPI even if the
    launcher is not recognised.  Returns the exit status: 0, 130 when the fit was
    interrupted (``KeyboardInterrupt``; checkpoints written so far are kept), 2 under
    MPI when a rank failed (after telling every rank).  In a single process errors
    are raised.
    """
    from symref.train.parallel import get_comm

    comm = get_comm("mpi" if mpi else "auto")
    if comm.size == 1:
        return _train(comm, input_file, output, restart, valid_fraction)
    try:
        return _train(comm, input_file, output, restart, valid_fraction)
    except Exception as exc:  # noqa: BLE001 - one rank failing alone would leave the others waiting
        print(f"symref: error (MPI rank {comm.rank} of {comm.size}): "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        comm.abort(2)  # ends every rank; returns only when another rank's abort came first
        return 2


def _train(comm, input_file, output, restart, valid_fraction) -> int:
    from symref.io.data import load_systems
    from symref.io.inputfile import LOSS_DEFAULTS, read_input
    from symref.io.model_file import save_model
    from symref.train.loss import LossPrefactors, TensorPrefactors
    from symref.model.build import build_model
    from symref.model.tensor import DeepTensor
    from symref.train.optim import ExpDecayLR
    from symref.train.parallel import default_threads, sync_model
    from symref.train.fit import fit_adam, fit_lbfgs

    root = comm.is_root
    say = print if root else (lambda *a, **k: None)
    if comm.size > 1 and "NUMBA_NUM_THREADS" not in os.environ:
        import numba

        numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, default_threads(comm)))
    cfg, warnings = read_input(input_file)
    for w in warnings:
        say(f"warning: {w}", file=sys.stderr)
    tr = cfg["training"]
    seed = int(tr.get("seed", 0))
    model = build_model(cfg["model"], seed=seed)
    train = load_systems(tr["training_data"]["systems"], model.type_map)
    valid = load_systems(tr["validation_data"]["systems"], model.type_map) \
        if tr.get("validation_data", {}).get("systems") else None
    if valid_fraction:
        if valid:
            raise ValueError(f"{input_file}: --valid-fraction and validation_data.systems "
                             "both given; use one")
        from symref.io.data import split_frames

        train, valid = split_frames(train, valid_fraction, seed=seed)
    nframes = sum(s.nframes for s in train)
    say(f"symref train: {len(train)} training system(s), {nframes} frames; "
        f"{len(valid) if valid else 0} validation system(s)"
        + (f", {sum(s.nframes for s in valid)} frames" if valid else ""))
    if comm.size > 1:
        import numba

        say(f"symref train: {comm.size} MPI ranks share the frames of each batch "
            f"({numba.get_num_threads()} numba thread(s) per rank; rank 0 writes the files)")
    try:
        from symref.train.stats import compute_statistics, stat_frames
    except ImportError:
        say("warning: symref.train.stats not available: statistics left neutral", file=sys.stderr)
    else:
        if restart is None:  # deepmd-kit's sample of frames and its statistics
            frames = stat_frames(train, batch_size=tr["training_data"].get("batch_size", "auto"))
            if isinstance(model, DeepTensor):
                from symref.train.stats import apply_statistics, env_stat, tensor_shift

                apply_statistics(model, *env_stat(model, frames))
                if model.kind == "polar" and model.fitting.shift_diag:
                    model.out_bias = tensor_shift(model, frames)
            else:
                compute_statistics(model, frames)
    sync_model(model, comm)  # every rank starts from rank 0's bits
    if isinstance(model, DeepTensor):  # deepmd-kit's tensor loss: constant weights
        lc = cfg.get("loss", {})
        start = limit = TensorPrefactors(float(lc.get("pref", 1.0)),
                                         float(lc.get("pref_atomic", 1.0)))
    else:
        loss = {**LOSS_DEFAULTS, **{k: v for k, v in cfg.get("loss", {}).items()
                                    if k in LOSS_DEFAULTS}}
        start = LossPrefactors(loss["start_pref_e"], loss["start_pref_f"], loss["start_pref_v"])
        limit = LossPrefactors(loss["limit_pref_e"], loss["limit_pref_f"], loss["limit_pref_v"])
    numb_steps = int(tr.get("numb_steps", 1000))
    opt = cfg.get("optimizer", {}).get("type", "adam")
    out = Path(output)
    if opt == "lbfgs":
        try:
            model, _ = fit_lbfgs(model, train, limit,
                                 maxiter=int(cfg["optimizer"].get("maxiter", numb_steps)),
                                 time_limit=cfg["optimizer"].get("time_limit"),
                                 checkpoint=tr.get("save_ckpt", "model.ckpt") + ".json",
                                 save_freq=int(tr.get("save_freq", 1000)), restart=restart,
                                 comm=comm)
        except KeyboardInterrupt as e:
            say(f"symref train: {e}", file=sys.stderr)
            return 130
    else:
        lr = cfg.get("learning_rate", {})
        sched = ExpDecayLR(start_lr=float(lr.get("start_lr", 1e-3)), num_steps=numb_steps,
                           stop_lr=float(lr.get("stop_lr", 1e-8)),
                           decay_steps=int(lr.get("decay_steps", 5000)),
                           decay_rate=lr.get("decay_rate"),
                           warmup_steps=int(lr.get("warmup_steps", 0)),
                           warmup_start_factor=float(lr.get("warmup_start_factor", 0.0)),
                           smooth=bool(lr.get("smooth", False)))
        bs = tr["training_data"].get("batch_size", "auto")
        if bs == "auto":
            bs = max(1, -(-32 // min(s.natoms for s in train)))
        try:
            model = fit_adam(model, train, valid, numb_steps=numb_steps, lr=sched,
                             pref_start=start, pref_limit=limit, batch_size=int(bs), seed=seed,
                             disp_freq=int(tr.get("disp_freq", 1000)),
                             save_freq=int(tr.get("save_freq", 1000)),
                             checkpoint=tr.get("save_ckpt", "model.ckpt") + ".json",
                             lcurve=tr.get("disp_file", "lcurve.out"), restart=restart,
                             time_limit=cfg.get("optimizer", {}).get("time_limit"),
                             valid_frames=_valid_frames(tr), comm=comm)
        except KeyboardInterrupt as e:
            say(f"symref train: {e}", file=sys.stderr)
            return 130
    if not root:
        return 0
    save_model(model, out)
    print(f"symref train: wrote {out}")
    if out.suffix.lower() != ".dp":  # and the file deepmd-kit loads (dp test, DeepPot)
        dp = out.with_suffix(".dp")
        try:
            save_model(model, dp)
            print(f"symref train: wrote {dp} (deepmd-kit)")
        except ImportError as e:
            print(f"warning: {dp} not written: {e}", file=sys.stderr)
    return 0


def _valid_frames(tr) -> int:
    """Frames per validation display: deepmd-kit's ``numb_btch`` x ``batch_size``
    (``batch_size`` "auto" counts as 1 frame here); 8 when ``numb_btch`` is absent."""
    vd = tr.get("validation_data") or {}
    if "numb_btch" not in vd:
        return 8
    bs = vd.get("batch_size", 1)
    return max(1, int(vd["numb_btch"]) * (int(bs) if bs != "auto" else 1))
