r"""``symref train input.json``: build (or restart) a model, fit it, save it.

:func:`train_from_input` is the whole command; :mod:`symref.cli` only parses the
arguments.  Steps, as deepmd-kit's ``dp train``:

1. read ``input.json`` (:func:`symref.io.inputfile.read_input`: deepmd-kit's
   defaults, every key checked);
2. load the training systems, and validation systems or a held-out fraction
   (``valid_fraction``) of every training system; ``sel: "auto"`` from their
   neighbour counts (:func:`symref.io.neighbor_stat.resolve_sel`); build the model
   with ``training.seed``; with ``restart``, ``init_model`` or ``init_frz_model``,
   refuse a checkpoint or model whose network differs (:func:`check_same_model`);
3. statistics (``davg``/``dstd``, the energy bias; tensor shift) from as many frames
   as deepmd-kit samples (``--stat-frames``: the first ones, the default, or a
   random subset seeded by ``training.seed``; :mod:`symref.train.stats`), unless
   restarting or starting from ``init_model`` /
   ``init_frz_model`` (deepmd-kit's ``has_initial_state``: the file's statistics and
   output bias are kept as they are, no ``change-bias``);
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

import contextlib
import os
import sys
from pathlib import Path


def train_from_input(input_file, output="model.yaml", *, restart=None,
                     valid_fraction: float = 0.0, mpi: bool = False, init_model=None,
                     init_frz_model=None, stat_frames: str = "first") -> int:
    """Run ``symref train``: fit the model of ``input_file`` (deepmd-kit ``input.json``)
    and write it to ``output`` (``.yaml``, ``.json``, or ``.dp``).

    ``restart``: a checkpoint to continue from.  ``init_model``: a model file to start
    from (deepmd-kit's ``dp train --init-model``: its parameters and statistics, step 0,
    a fresh optimiser; refused when its network differs from the input's).
    ``init_frz_model``: a frozen model file (``.dp``, ``.yaml``, ``.json``) to start from,
    as ``dp --pt train --init-frz-model`` starts from a ``.pth``: its weights, ``davg``/
    ``dstd``, ``bias_atom_e`` and ``out_bias``/``out_std`` as they are (deepmd-kit loads
    the frozen state dict and, having an initial state, computes no statistics and does
    not touch the output bias); step 0, a fresh optimiser and schedule.  A model whose
    type_map, descriptor or fitting differs from the input's is refused, every
    difference named (:func:`check_same_model`).
    ``stat_frames``: ``"first"`` or ``"random"``, the frames of the statistics
    (:func:`symref.train.stats.stat_frames`; ``symref train --stat-frames``).
    ``valid_fraction``: hold out this
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
        with run_lock(input_file):
            return _train(comm, input_file, output, restart, valid_fraction, init_model,
                          init_frz_model, stat_frames)
    try:
        with run_lock(input_file, comm.is_root):
            return _train(comm, input_file, output, restart, valid_fraction, init_model,
                          init_frz_model, stat_frames)
    except Exception as exc:  # noqa: BLE001 - one rank failing alone would leave the others waiting
        print(f"symref: error (MPI rank {comm.rank} of {comm.size}): "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        comm.abort(2)  # ends every rank; returns only when another rank's abort came first
        return 2


LOCK_NAME = ".symref_train.lock"


@contextlib.contextmanager
def run_lock(input_file, take: bool = True):
    """One ``symref train`` per folder: ``.symref_train.lock`` (holding the process id) in
    the working directory, where the checkpoint and ``lcurve.out`` go, created exclusively
    for the run and removed after it.  A second run while the first is alive is refused
    (ValueError naming the lock and the process); a lock left by a killed run (its process
    gone) is taken over with a warning."""
    if not take:
        yield
        return
    lock = Path(LOCK_NAME)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = None
            if pid is not None and _alive(pid):
                raise ValueError(f"{lock.resolve()}: another symref train (process {pid}) is "
                                 f"running in this folder and writes its checkpoint and "
                                 f"lcurve.out here; run {input_file} in another folder or "
                                 "wait for it") from None
            print(f"warning: {lock}: left by a run that is no longer alive "
                  f"(process {pid}); taking it over", file=sys.stderr)
            lock.unlink(missing_ok=True)
    else:
        raise ValueError(f"{lock.resolve()}: could not create the run lock")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{os.getpid()} {input_file}\n")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _train(comm, input_file, output, restart, valid_fraction, init_model=None,
           init_frz_model=None, stat_rule="first") -> int:
    from symref.io.data import load_systems
    from symref.io.inputfile import batch_size, read_input
    from symref.io.model_file import save_model
    from symref.io.neighbor_stat import resolve_sel
    from symref.train.loss import TensorPrefactors
    from symref.model.build import build_model
    from symref.model.tensor import DeepTensor
    from symref.train.optim import CosineLR, ExpDecayLR
    from symref.train.parallel import default_threads, sync_model
    from symref.train.fit import fit_adam, fit_lbfgs

    given = [f"--{k}" for k, v in (("restart", restart), ("init-model", init_model),
                                   ("init-frz-model", init_frz_model)) if v is not None]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} both given; use one")
    root = comm.is_root
    say = print if root else (lambda *a, **k: None)
    if comm.size > 1 and "NUMBA_NUM_THREADS" not in os.environ:
        import numba

        numba.set_num_threads(min(numba.config.NUMBA_NUM_THREADS, default_threads(comm)))
    cfg, warnings = read_input(input_file)
    for w in warnings:
        say(f"warning: {w}", file=sys.stderr)
    tr = cfg["training"]
    mc = cfg["model"]
    seed = 0 if tr.get("seed") is None else int(tr["seed"])
    type_map = mc["type_map"]
    train = load_systems(tr["training_data"]["systems"], type_map)
    valid = load_systems(tr["validation_data"]["systems"], type_map) \
        if tr["validation_data"] is not None else None
    if valid_fraction:
        if valid:
            raise ValueError(f"{input_file}: --valid-fraction and validation_data.systems "
                             "both given; use one")
        from symref.io.data import split_frames

        train, valid = split_frames(train, valid_fraction, seed=seed)
    if init_frz_model is not None:  # the same start as init_model: weights and statistics
        init_model, flag = init_frz_model, "--init-frz-model"
    else:
        flag = "--init-model"
    start = None  # the model we continue from: the checkpoint's or init_model's
    if restart is not None:
        from symref.train.fit import load_checkpoint

        start, what, label = load_checkpoint(restart)[0], f"--restart {restart}", "checkpoint"
    elif init_model is not None:
        from symref.io.model_file import load_model

        start, what, label = load_model(init_model), f"{flag} {init_model}", "model"
    if start is not None:  # sel "auto": the starting model's (a hybrid: member by member)
        mc = {**mc, "descriptor": _sel_of(mc["descriptor"], start.descriptor)}
    mc = {**mc, "descriptor": resolve_sel(mc["descriptor"], train, len(type_map), say=say)}
    model = build_model(mc, seed=seed)
    if start is not None:
        check_same_model(start, model, what, label, input_file)
    if init_model is not None:  # its parameters and statistics, a fresh optimiser
        model = start
        say(f"symref train: starting from {init_model} (its parameters and statistics)")
    nframes = sum(s.nframes for s in train)
    say(f"symref train: {len(train)} training system(s), {nframes} frames; "
        f"{len(valid) if valid else 0} validation system(s)"
        + (f", {sum(s.nframes for s in valid)} frames" if valid else ""))
    if comm.size > 1:
        import numba

        say(f"symref train: {comm.size} MPI ranks share the frames of each batch "
            f"({numba.get_num_threads()} numba thread(s) per rank; rank 0 writes the files)")
    from symref.train.stats import compute_statistics, stat_frames

    if start is None:  # deepmd-kit's sample of frames and its statistics
        if stat_rule not in ("first", "random"):
            raise ValueError(f"stat_frames must be 'first' or 'random', got {stat_rule!r}")
        random = stat_rule == "random"
        frames = stat_frames(train, data_stat_nbatch=mc["data_stat_nbatch"],
                             batch_size=tr["training_data"]["batch_size"],
                             seed=seed if random else None)
        if isinstance(model, DeepTensor):
            from symref.train.stats import apply_statistics, env_stat, tensor_shift

            apply_statistics(model, *env_stat(model, frames))
            if model.kind == "polar" and model.fitting.shift_diag:
                model.out_bias = tensor_shift(model, frames)
        else:
            compute_statistics(model, frames, rcond=mc["fitting_net"].get("rcond"))
    sync_model(model, comm)  # every rank starts from rank 0's bits
    loss = cfg["loss"]
    if isinstance(model, DeepTensor):  # deepmd-kit's tensor loss: constant weights
        start = limit = TensorPrefactors(float(loss["pref"]), float(loss["pref_atomic"]))
    else:
        start, limit = energy_prefactors(loss)
    numb_steps = tr["numb_steps"]
    opt = cfg.get("optimizer", {"type": "Adam"})
    out = Path(output)
    checkpoint = tr["save_ckpt"] + ".json"
    if opt["type"] == "lbfgs":
        try:
            model, _ = fit_lbfgs(model, train, limit,
                                 maxiter=opt["maxiter"] or numb_steps,
                                 time_limit=opt["time_limit"], checkpoint=checkpoint,
                                 save_freq=tr["save_freq"], restart=restart, comm=comm,
                                 valid=valid, disp_freq=tr["disp_freq"],
                                 lcurve=tr["disp_file"], valid_frames=_valid_frames(tr, valid),
                                 standardize=opt["standardize"], maxcor=opt["maxcor"])
        except KeyboardInterrupt as e:
            say(f"symref train: {e}", file=sys.stderr)
            return 130
    else:
        lr = cfg["learning_rate"]
        common = dict(start_lr=lr["start_lr"], num_steps=numb_steps, stop_lr=lr["stop_lr"],
                      warmup_steps=lr["warmup_steps"],
                      warmup_start_factor=lr["warmup_start_factor"])
        sched = CosineLR(**common) if lr["type"] == "cosine" else \
            ExpDecayLR(**common, decay_steps=lr["decay_steps"], decay_rate=lr["decay_rate"],
                       smooth=lr["smooth"])
        # one batch size for all systems: that of the smallest system (deepmd-kit: per system)
        bs = batch_size(tr["training_data"]["batch_size"], min(s.natoms for s in train))
        try:
            model = fit_adam(model, train, valid, numb_steps=numb_steps, lr=sched,
                             pref_start=start, pref_limit=limit, batch_size=bs, seed=seed,
                             disp_freq=tr["disp_freq"], save_freq=tr["save_freq"],
                             checkpoint=checkpoint, lcurve=tr["disp_file"], restart=restart,
                             time_limit=opt.get("time_limit"),
                             valid_frames=_valid_frames(tr, valid), comm=comm)
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


def energy_prefactors(loss: dict):
    """``(start, limit)`` :class:`~symref.train.loss.LossPrefactors` of an ``ener`` loss
    section.  As deepmd-kit's ``EnergyStdLoss`` (``has_e`` ... ``has_pf``), a term whose
    start *or* limit prefactor is 0 is not in the loss at all (both set to 0 here);
    ``relative_f`` and ``use_default_pf`` are carried as given."""
    from symref.train.loss import PREF_TERMS, LossPrefactors

    opts = {"relative_f": loss.get("relative_f"), "use_default_pf": loss["use_default_pf"]}
    on = {k: loss[f"start_{k}"] != 0 and loss[f"limit_{k}"] != 0 for k in PREF_TERMS}
    return tuple(LossPrefactors(**{k: float(loss[f"{w}_{k}"]) if on[k] else 0.0
                                   for k in PREF_TERMS}, **opts) for w in ("start", "limit"))


def model_signature(model) -> dict:
    """What defines a model's network and its inputs (``name -> value``): type_map,
    descriptor and fitting hyper-parameters, exclusions.  Two models with equal
    signatures have parameter arrays of the same shapes and meanings."""
    import numpy as np

    from symref.model.base import dtype_of

    f = model.fitting
    sig = {"type_map": list(model.type_map), "fitting_net.type": getattr(f, "kind", "ener")}
    _descriptor_signature(model.descriptor, "descriptor", sig)
    for k in ("neuron", "resnet_dt", "precision", "activation_function", "fit_diag"):
        if hasattr(f, k):
            v = getattr(f, k)
            sig[f"fitting_net.{k}"] = list(v) if isinstance(v, (list, tuple)) else v
    for k in sig:  # precision "default" is float64
        if k.endswith("precision") and sig[k] is not None:
            sig[k] = np.dtype(dtype_of(sig[k])).name
    sig["atom_exclude_types"] = sorted(int(t) for t in model.atom_exclude_types)
    sig["pair_exclude_types"] = sorted([sorted(map(int, p)) for p in model.pair_exclude_types])
    return sig


def _descriptor_signature(d, prefix: str, sig: dict) -> None:
    """:func:`model_signature`'s entries of descriptor ``d`` under ``prefix`` (its class,
    hyper-parameters; a hybrid's members under ``prefix.list[k]``)."""
    sig[f"{prefix}.type"] = type(d).__name__
    if hasattr(d, "members"):
        for k, m in enumerate(d.members):
            _descriptor_signature(m, f"{prefix}.list[{k}]", sig)
        return
    for k in ("rcut", "rcut_smth", "sel", "neuron", "axis_neuron", "type_one_side", "resnet_dt",
              "precision", "exclude_types", "env_protection", "activation_function"):
        v = getattr(d, k, None)
        sig[f"{prefix}.{k}"] = [list(x) for x in v] if k == "exclude_types" else \
            (list(v) if isinstance(v, (list, tuple)) else v)


def _sel_of(section: dict, desc) -> dict:
    """Descriptor ``section`` with a ``sel`` of "auto" replaced by descriptor ``desc``'s
    (the model training continues from; a hybrid member by member)."""
    if section.get("type") == "hybrid" and hasattr(desc, "members"):
        return {**section, "list": [_sel_of(s, m) for s, m in zip(section["list"],
                                                                    desc.members)]}
    if isinstance(section.get("sel"), str):
        return {**section, "sel": list(desc.sel)}
    return section


def check_same_model(start, model, what: str, label: str, input_file) -> None:
    """Refuse to continue from ``start`` (the ``label`` "checkpoint" of ``--restart`` or
    the "model" of ``--init-model``; ``what`` names the option) when it is not the
    model ``input_file`` builds (``model``): ValueError listing every difference of
    :func:`model_signature`."""
    old, new = model_signature(start), model_signature(model)
    diff = [f"model.{k}: {label} {old.get(k)!r}, input {new.get(k)!r}"
            for k in new if old.get(k) != new.get(k)]
    if diff:
        raise ValueError(f"{what}: the {label}'s model differs from the one {input_file} "
                         "defines; " + "; ".join(diff)
                         + " (start a new training, or use its settings)")


def _valid_frames(tr, valid) -> int:
    """Frames per validation display: deepmd-kit's ``numb_btch`` x the validation
    batch size (``"auto"``: of the smallest validation system)."""
    vd = tr["validation_data"] or {"numb_btch": 1, "batch_size": "auto"}
    if not valid:
        return 1
    from symref.io.inputfile import batch_size

    return vd["numb_btch"] * batch_size(vd["batch_size"], min(s.natoms for s in valid))
