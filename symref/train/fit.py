r"""Fitting a DeepPot to labelled frames with SciPy's L-BFGS on the exact loss gradient.

The objective is the loss of :mod:`symref.train.loss` averaged over every frame of
every system (full batch, fixed prefactors), as a function of the flat vector
of all trainable parameters (:func:`symref.model.params.flat_parameters`; order of
:func:`symref.model.params.parameters`).  ``scipy.optimize.minimize(method="L-BFGS-B",
jac=True)`` drives it.  Deterministic: the same data, seed and thread count
give the same iterates.
"""
from __future__ import annotations

import time

import numpy as np

from symref.model.params import flat_parameters, flat_vector, parameters, set_flat_parameters
from symref.train.lcurve import Lcurve, display_row, lcurve_keys
from symref.train.loss import (LossPrefactors, TensorPrefactors, dp_weights, energy_errors,
                               energy_labels, energy_loss_and_grad, scheduled_prefactors,
                               tensor_loss_and_grad)


def batch_loss_and_grad(model, systems, pref: LossPrefactors = LossPrefactors(),
                        backend: str = "numba", comm=None):
    """Loss and flat gradient averaged over all frames of ``systems``
    (``backend``: see :func:`symref.train.loss.energy_loss_and_grad`).

    The mean is ``(1/n) Σ_f [L_f, ∇L_f]`` over the n frames (system by system),
    the frames added in the fixed pairwise tree of :func:`symref.train.parallel.tree_sum`.
    With ``comm`` (:mod:`symref.train.parallel`; default: one process) each rank
    evaluates only its shard of the frames and the node sums are exchanged:
    the result is bitwise the same on every rank and for any number of ranks.
    """
    from symref.train.parallel import SERIAL, sharded_sum

    comm = SERIAL if comm is None else comm
    nframes = sum(s.nframes for s in systems)
    if nframes == 0:
        raise ValueError("no frames to fit")
    params = parameters(model)
    width = 1 + sum(a.size for _, a in params)
    tensor = isinstance(pref, TensorPrefactors)  # dipole / polarizability model
    labels = []
    for s in systems:  # label problems are raised on every rank, before any evaluation
        if tensor:
            labels.append(tensor_labels(model, s))
            continue
        if s.energy is None or s.force is None:
            raise ValueError(f"{s.name or 'system'}: energy and force labels are needed")
        if pref.pref_v and s.virial is None:
            raise ValueError(f"{s.name or 'system'}: pref_v is nonzero but there are no "
                             "virial labels")
        labels.append(energy_labels(s, pref))  # atom_ener, atom_pref, the system's pref
    index = [(k, f) for k, s in enumerate(systems) for f in range(s.nframes)]

    def frame(i):
        k, f = index[i]
        s, sl = systems[k], slice(f, f + 1)
        box = None if s.box is None else s.box[sl]
        if tensor:
            label, atom = labels[k]
            loss, g = tensor_loss_and_grad(model, s.coord[sl], s.atype, box,
                                           None if label is None else label[sl],
                                           None if atom is None else atom[sl], pref,
                                           backend=backend)
        else:
            ae, q, p = labels[k]
            loss, g = energy_loss_and_grad(model, s.coord[sl], s.atype, box, s.energy[sl],
                                           s.force[sl], s.virial[sl] if pref.pref_v else None,
                                           p, backend=backend,
                                           atom_ener=None if ae is None else ae[sl],
                                           atom_pref=None if q is None else q[sl])
        out = np.empty(width)
        out[0] = loss
        out[1:] = flat_vector(g[name] for name, _ in params)  # layout of flat_parameters
        return out

    total = sharded_sum(nframes, frame, width, comm)
    total /= nframes
    return float(total[0]), total[1:]


def tensor_labels(model, system):
    """``(global label or None, atomic label or None)`` of ``system`` for a DeepTensor;
    atomic labels expanded to every atom (zeros outside the selected types).
    ``ValueError`` naming the system when it has neither."""
    from symref.io.data import atomic_labels

    name = model.var_name
    sel = [t for t in range(model.ntypes) if t not in model.atom_exclude_types]
    label = system.tensors.get(name)
    atom = atomic_labels(system, f"atom_{name}", sel) if f"atom_{name}" in system.tensors \
        else None
    if label is None and atom is None:
        files = "dipole.npy / atomic_dipole.npy" if name == "dipole" else \
            "polarizability.npy / atomic_polarizability.npy"
        raise ValueError(f"{system.name or 'system'}: no {name} labels ({files})")
    return label, atom


def tensor_errors(model, system) -> dict:
    """RMSEs of a DeepTensor on ``system`` as deepmd-kit displays them: ``rmse_gl``
    (global label per atom: sqrt(mean sq. error) / the number of atoms not in
    ``atom_exclude_types``), ``rmse_lc`` (atomic label: the mean over those atoms'
    components only) and ``rmse_gl_total`` (global, not divided); only those with labels."""
    from symref.train.loss import selected_atoms

    label, atom = tensor_labels(model, system)
    ev = model.evaluate(system.coord, system.atype, system.box)
    nsel = int(selected_atoms(model, system.atype)[0])
    out = {}
    if label is not None:
        r = float(np.sqrt(np.mean((ev[model.var_name] - label) ** 2)))
        out["rmse_gl"] = r / nsel
        out["rmse_gl_total"] = r
    if atom is not None:
        sq = (ev[f"atom_{model.var_name}"] - atom) ** 2  # nf x natoms x shape
        out["rmse_lc"] = float(np.sqrt(sq.sum() / (sq.size / system.natoms * nsel)))
    return out


def fit_lbfgs(model, systems, pref: LossPrefactors = LossPrefactors(), *, maxiter: int = 100,
              progress=print, gtol: float = 1e-12, time_limit: float | None = None,
              checkpoint=None, save_freq: int = 0, restart=None, comm=None, valid=None,
              disp_freq: int = 0, lcurve=None, valid_frames: int = 8,
              standardize: bool = False, maxcor: int = 50):
    """Minimise the loss over ``systems`` with L-BFGS-B; returns ``(model, SciPy's result)``.

    ``progress(line)`` gets one line per iteration (``lbfgs iter``, loss, elapsed);
    pass ``None`` to silence it.  Every ``disp_freq`` iterations (0: never) the line
    also carries what Adam's lines carry: the displayed errors on the training frames
    (:func:`pooled_errors`, every system), on the first ``valid_frames`` frames of one
    ``valid`` system (cycling through them) and the ETA (to ``maxiter`` or
    ``time_limit``, whichever comes first); the same row goes to ``lcurve``
    (:class:`symref.train.lcurve.Lcurve`, fixed columns; its ``lr`` column is nan:
    L-BFGS has no learning rate).  ``time_limit`` (seconds) ends the run at the
    first iteration past it.  With ``checkpoint`` (a file) the accepted
    parameters are saved every ``save_freq`` iterations, at the end, and on
    SIGINT (Ctrl-C: the current iteration finishes, the checkpoint is
    written, then ``KeyboardInterrupt`` is raised).

    ``maxcor``: curvature pairs L-BFGS keeps (SciPy's default is 10).  SciPy's relative-
    reduction stop (``ftol``) is off: the run ends at ``maxiter``, ``time_limit``,
    ``gtol`` or when the line search fails.

    ``standardize``: optimise in coordinates where every fitting net sees its input
    standardised (:func:`standardized_coordinates`: the first layer of the net of
    type t is ``W = W'/σ_t``, ``b = b' − (μ_t/σ_t) W'``, with μ_t, σ_t the mean and
    spread of each descriptor component over the type-t atoms of ``systems`` at the
    start).  The model keeps deepmd-kit's parametrisation; only the variables
    L-BFGS moves change, and, on a fresh start, the initial weights are read as W'
    (a random net on standardised inputs instead of one on D ~ 1e-2, whose first
    layer sits in tanh's linear regime); each parameter array is then scaled so that
    the curvatures along the arrays are alike (:func:`standardized_coordinates` with
    ``pref``).  Why it helps: the rows of W multiply components of D whose spreads
    differ by orders of magnitude, so the loss's curvature along them differs by
    their squares, and L-BFGS's initial Hessian guess (a multiple of the identity)
    fits none of them; in W' the spreads are 1.  Measured on water (tutorial 04's
    model, 12 frames, 60 s, ``benchmarks/README.md``): data_3 force RMSE 0.494 eV/Å
    with the fold of the initial weights only, 0.359 in standardised coordinates,
    0.296 with ``maxcor`` 50, 0.217 with the per-array scaling too.

    Restart behaviour (documented, not bit-identical): ``restart`` (a
    checkpoint) continues from the saved parameters and iteration count with
    ``maxiter`` counted from the start of the first run, but with an *empty*
    L-BFGS memory: SciPy's L-BFGS-B cannot be handed its curvature pairs
    back.  The first iterations after a restart are therefore closer to
    gradient descent and the iterates differ from an uninterrupted run's; the
    loss keeps decreasing monotonically and reaches a comparable value
    (tests/test_train.py measures it).  ``lcurve`` rows past the checkpoint are
    dropped.

    With ``comm`` (:mod:`symref.train.parallel`) the frames are shared among MPI
    ranks (:func:`batch_loss_and_grad`); every rank runs SciPy on the same,
    bitwise equal gradients, so the iterates are the same on every rank
    (checked at the end); stops are agreed by all ranks; only rank 0 prints
    and writes the checkpoint and ``lcurve``.
    """
    import signal

    from scipy.optimize import minimize

    from symref.train.optim import Adam
    from symref.train.parallel import SERIAL

    comm = SERIAL if comm is None else comm
    root = comm.is_root
    if not root:
        progress = None
    it0 = 0
    if restart is not None:
        model, it0, _, _ = load_checkpoint(restart)
    to_model, to_opt, grad_to_opt = (lambda x: x), (lambda x: x), (lambda g: g)
    if standardize:  # on a fresh start the initial weights are read as W', b' (the fold)
        to_model, to_opt, grad_to_opt = standardized_coordinates(
            model, systems, fold=restart is None, pref=pref, comm=comm)
    x_start = to_opt(flat_parameters(model))
    tensor = isinstance(pref, TensorPrefactors)
    var_name = model.var_name if tensor else None
    keys = lcurve_keys(pref, pref, var_name)
    log = Lcurve(lcurve, keys, bool(valid), restart_step=it0 if restart is not None else None) \
        if lcurve and root else None
    t0 = time.perf_counter()
    state = {"it": it0, "stop": False, "stopped": False}

    def fun(y):
        set_flat_parameters(model, to_model(y))
        loss, g = batch_loss_and_grad(model, systems, pref, comm=comm)
        return loss, grad_to_opt(g)

    def save(y):
        if checkpoint and root:
            set_flat_parameters(model, to_model(y))
            save_checkpoint(checkpoint, model, state["it"], Adam(), np.random.default_rng(0))

    def display(it, loss, y):
        """Errors, lcurve row and the long progress line of iteration ``it``."""
        set_flat_parameters(model, to_model(y))
        trn = display_row(pooled_errors(model, systems, pref), keys, var_name)
        if not tensor:
            trn["rmse"] = float(np.sqrt(loss))  # sqrt of the loss L-BFGS minimises
        val = None
        if valid:
            from symref.io.data import select_frames

            vs = valid[(it // disp_freq) % len(valid)]
            val = display_row(errors(model, select_frames(
                vs, np.arange(min(valid_frames, vs.nframes))), pref), keys, var_name)
        if log:
            log.write(it, float("nan"), trn, val)
        el = time.perf_counter() - t0
        eta = el / max(it - it0, 1) * (maxiter - it)
        if time_limit is not None:
            eta = min(eta, max(time_limit - el, 0.0))
        msg = "  ".join(f"{k} {v:.3e}" for k, v in sorted(trn.items()))
        vmsg = ("  val " + "  ".join(f"{k} {v:.3e}" for k, v in sorted(val.items()))
                if val else "")
        return f"  trn {msg}{vmsg}  elapsed {el:.1f} s  eta {eta:.1f} s"

    def callback(intermediate_result):
        state["it"] += 1
        it = state["it"]
        state["x"] = intermediate_result.x
        extra = ""
        if root and disp_freq and (it % disp_freq == 0 or it == maxiter) \
                and (progress is not None or log):
            extra = display(it, intermediate_result.fun, intermediate_result.x)
        if progress is not None:
            progress(f"lbfgs iter {it:5d}  loss {intermediate_result.fun:.6e}  "
                     + (extra.lstrip() if extra else
                        f"elapsed {time.perf_counter() - t0:.1f} s"))
        out_of_time = time_limit is not None and time.perf_counter() - t0 >= time_limit
        stop_now, out_of_time = comm.any(state["stop"], out_of_time)  # all ranks agree
        state["stopped"] = stop_now
        if (save_freq and it % save_freq == 0) or stop_now or out_of_time:
            save(intermediate_result.x)
        if stop_now or out_of_time:
            raise StopIteration

    def on_sigint(signum, frame):
        state["stop"] = True

    old_handler = signal.signal(signal.SIGINT, on_sigint) if threading_main() else None
    try:
        res = minimize(fun, x_start, jac=True, method="L-BFGS-B", callback=callback,
                       options={"maxiter": max(0, maxiter - it0), "gtol": gtol,
                                "maxcor": int(maxcor), "ftol": 0.0})
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
        if log:
            log.close()
    set_flat_parameters(model, to_model(res.x))
    comm.check_identical(res.x, "L-BFGS parameters")
    if state["stopped"]:
        raise KeyboardInterrupt(f"interrupted after L-BFGS iteration {state['it']}; checkpoint "
                                f"{checkpoint or '(none: no checkpoint path)'}")
    save(res.x)
    return model, res


def standardized_coordinates(model, systems, fold: bool = False, pref=None, comm=None):
    """``(to_model, to_opt, grad_to_opt)``: the change of variables of
    :func:`fit_lbfgs`'s ``standardize`` on the flat parameter vector.

    For the net of type t, first layer ``W`` (nin x nout), ``b`` (nout):
    ``W = W'/σ_t[:, None]``, ``b = b' − (μ_t/σ_t) W'``; the chain rule gives
    ``∂L/∂W' = (∂L/∂W)/σ_t[:, None] − (μ_t/σ_t)[:, None] ∂L/∂b``,
    ``∂L/∂b' = ∂L/∂b``.
    μ_t, σ_t: mean and standard deviation of each component of D over the type-t atoms
    of every frame of ``systems`` (a σ below 1e-8 of the largest is taken as 1: a
    constant component is not rescaled).  Every other parameter is unchanged.
    ``fold``: also set the model's parameters to ``to_model`` of its current ones
    (its first-layer weights become W', b' of a net on standardised inputs).

    With ``pref`` (the loss prefactors), each parameter array a is moreover scaled,
    ``y_a = s_a z_a``, by ``s_a = sqrt(max(rms y_a, 0.1) / rms g_a)`` (g the gradient
    of the loss in y at the start; the s_a normalised to geometric mean 1): for a
    quadratic with curvature h_a along array a, ``|g_a| ≈ h_a |y_a - y*_a|`` and, taking
    the distance to the optimum of the order of ``|y_a|``, ``s_a ≈ 1/sqrt(h_a)``, which
    makes the curvatures of all arrays alike (on water at the start they span three
    orders of magnitude).  A heuristic, measured: ``benchmarks/lbfgs_water.py``.
    """
    names = [n for n, _ in parameters(model)]
    sizes = [a.size for _, a in parameters(model)]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    where = {n: (int(offs[k]), int(offs[k + 1])) for k, n in enumerate(names)}
    D = {t: [] for t in range(model.ntypes)}
    for s in systems:
        for f in range(s.nframes):
            nlist, _, _, R, _ = model.environment(s.coord[f], s.atype,
                                                  None if s.box is None else s.box[f])
            d, _ = model.descriptor_forward(R, s.atype, nlist)  # nloc x M1*M2
            for t in range(model.ntypes):
                D[t].append(d[s.atype == t])
    blocks = []
    for t, net in enumerate(model.fitting.nets):
        w_name, b_name = f"fitting[{t}].layer[0].w", f"fitting[{t}].layer[0].b"
        if not D[t] or sum(len(x) for x in D[t]) == 0 or b_name not in where:
            continue  # no atoms of this type (or no bias): nothing to standardise
        x = np.concatenate(D[t])  # atoms x nin
        mu, sd = x.mean(axis=0), x.std(axis=0)  # nin
        sd = np.where(sd > 1e-8 * max(sd.max(), 1e-300), sd, 1.0)
        nin, nout = net[0].w.shape
        blocks.append((slice(*where[w_name]), slice(*where[b_name]), mu, sd, nin, nout))

    def to_model(y):
        x = np.array(y, dtype=np.float64)
        for ws, bs, mu, sd, nin, nout in blocks:
            w = y[ws].reshape(nin, nout) / sd[:, None]
            x[ws] = w.ravel()
            x[bs] = y[bs] - mu @ w
        return x

    def to_opt(x):
        y = np.array(x, dtype=np.float64)
        for ws, bs, mu, sd, nin, nout in blocks:
            w = x[ws].reshape(nin, nout)
            y[ws] = (w * sd[:, None]).ravel()
            y[bs] = x[bs] + mu @ w
        return y

    def grad_to_opt(g):
        h = np.array(g, dtype=np.float64)
        for ws, bs, mu, sd, nin, nout in blocks:
            gw = g[ws].reshape(nin, nout)
            h[ws] = (gw / sd[:, None] - (mu / sd)[:, None] * g[bs][None, :]).ravel()
        return h

    if fold:
        set_flat_parameters(model, to_model(flat_parameters(model)))
    if pref is None:
        return to_model, to_opt, grad_to_opt
    y0 = to_opt(flat_parameters(model))
    g0 = grad_to_opt(batch_loss_and_grad(model, systems, pref, comm=comm)[1])
    scale = np.ones_like(y0)
    for k in range(len(names)):
        sl = slice(int(offs[k]), int(offs[k + 1]))
        rms_y = max(float(np.sqrt(np.mean(y0[sl] ** 2))), 0.1)
        rms_g = float(np.sqrt(np.mean(g0[sl] ** 2)))
        scale[sl] = np.sqrt(rms_y / rms_g) if rms_g > 0 else 1.0
    scale /= np.exp(np.mean(np.log(scale)))
    return ((lambda z: to_model(scale * z)), (lambda x: to_opt(x) / scale),
            (lambda g: grad_to_opt(g) * scale))


def pooled_errors(model, systems, pref=None) -> dict:
    """:func:`errors` over several systems: each error the root of the frame-weighted
    mean of the systems' squared errors (a system without the label is left out; nan
    when none has it)."""
    if len(systems) == 1:
        return errors(model, systems[0], pref)
    acc: dict = {}
    for s in systems:
        for k, v in errors(model, s, pref).items():
            a = acc.setdefault(k, [0.0, 0])
            a[0] += s.nframes * v * v
            a[1] += s.nframes
    return {k: float(np.sqrt(a / n)) for k, (a, n) in acc.items()}


# --------------------------------------------------------------------- Adam
def errors(model, system, pref: LossPrefactors | None = None) -> dict:
    """deepmd-kit's displayed errors on the frames of ``system``: ``rmse_e`` (eV/atom),
    ``rmse_f`` (eV/Å), ``rmse_v`` (eV/atom, when virial labels exist); with ``pref``,
    those of its loss (:func:`symref.train.loss.energy_errors`: ``rmse`` = sqrt(loss),
    ``rmse_ae``, ``rmse_pf``, relative forces)."""
    from symref.train.report import errors_table

    from symref.model.tensor import DeepTensor

    if isinstance(model, DeepTensor):
        return tensor_errors(model, system)
    if pref is not None:
        return energy_errors(model, system, pref)
    table = errors_table(model, [system])
    out = {"rmse_e": table["energy/atom"][1], "rmse_f": table["force"][1]}
    if system.virial is not None:
        out["rmse_v"] = table["virial/atom"][1]
    return out


def save_checkpoint(path, model, step: int, adam, rng: np.random.Generator) -> None:
    """Model, Adam state, step and random-generator state in one file, written atomically
    (deepmd-kit's model-file layout; ``.json``, ``.yaml`` or ``.dp``)."""
    from symref.io.model_file import model_to_dict, write_model_file

    st = adam.state()
    data = {"software": "symref", "backend": "symref", "model": model_to_dict(model),
            "model_def_script": {},
            "@variables": {"adam_m": st["m"] if st["m"] is not None else np.zeros(0),
                           "adam_v": st["v"] if st["v"] is not None else np.zeros(0)},
            "training": {"step": int(step), "adam_t": st["t"], "beta1": st["beta1"],
                         "beta2": st["beta2"], "eps": st["eps"],
                         "rng": rng.bit_generator.state}}
    write_model_file(path, data)


def load_checkpoint(path):
    """``(model, step, adam, rng)`` from :func:`save_checkpoint`'s file."""
    from symref.io.model_file import model_from_dict, read_model_file
    from symref.train.optim import Adam

    d = read_model_file(path)
    if "training" not in d:
        raise ValueError(f"{path}: not a symref training checkpoint (no 'training' entry)")
    tr, var = d["training"], d["@variables"]
    m = np.asarray(var["adam_m"], dtype=np.float64)
    adam = Adam.from_state({"t": tr["adam_t"], "beta1": tr["beta1"], "beta2": tr["beta2"],
                            "eps": tr["eps"], "m": m if m.size else None,
                            "v": np.asarray(var["adam_v"]) if m.size else None})
    rng = np.random.default_rng()
    rng.bit_generator.state = tr["rng"]
    return model_from_dict(d["model"]), int(tr["step"]), adam, rng


def fit_adam(model, train, valid=None, *, numb_steps: int, lr, pref_start: LossPrefactors,
             pref_limit: LossPrefactors, batch_size: int = 1, seed: int = 0,
             disp_freq: int = 100, save_freq: int = 0, checkpoint=None, lcurve=None,
             restart=None, progress=print, valid_frames: int = 8,
             time_limit: float | None = None, comm=None):
    """Minibatch Adam with deepmd-kit's learning-rate and prefactor schedules.

    Each step draws a system with probability proportional to its frame count,
    then ``batch_size`` of its frames, from a generator seeded with ``seed``;
    everything (parameters, Adam moments, generator) is checkpointed, so a
    restart from ``restart`` (a checkpoint file) continues exactly where the
    run stopped.  SIGINT (Ctrl-C) finishes the current step, writes the
    checkpoint and raises ``KeyboardInterrupt``.  Validation errors use the
    first ``valid_frames`` frames of one validation system per display
    (cycling through the systems).  ``time_limit`` (seconds of this run) ends
    training early, after a display and a checkpoint, at the first step past
    it (the learning-rate schedule still runs to ``numb_steps``: set
    ``numb_steps`` to what fits the budget).  Returns the model (a new object
    when restarting).

    With ``comm`` (:mod:`symref.train.parallel`) every MPI rank draws the same
    minibatch from the same generator, then evaluates its shard of the
    batch's frames (:func:`batch_loss_and_grad`: the gradient is bitwise the
    same on every rank and for any number of ranks, so are the Adam steps;
    checked at the end).  Stops are agreed by all ranks; only rank 0 computes
    the displayed errors, prints, and writes ``lcurve`` and the checkpoint.
    """
    import signal

    from symref.io.data import select_frames
    from symref.train.optim import Adam
    from symref.train.parallel import SERIAL

    comm = SERIAL if comm is None else comm
    root = comm.is_root
    if not root:
        progress = None

    if restart is not None:
        model, step0, adam, rng = load_checkpoint(restart)
    else:
        step0, adam, rng = 0, Adam(), np.random.default_rng(seed)
    sizes = np.array([s.nframes for s in train], dtype=np.float64)
    prob = sizes / sizes.sum()
    tensor = isinstance(pref_start, TensorPrefactors)
    var_name = model.var_name if tensor else None
    keys = lcurve_keys(pref_start, pref_limit, var_name)  # fixed columns, as deepmd-kit
    log = Lcurve(lcurve, keys, bool(valid), restart_step=step0 if restart is not None else None) \
        if lcurve and root else None
    stop = {"flag": False}

    def on_sigint(signum, frame):
        stop["flag"] = True

    old_handler = signal.signal(signal.SIGINT, on_sigint) \
        if threading_main() else None
    t0 = time.perf_counter()
    try:
        for step in range(step0, numb_steps):
            k = int(rng.choice(len(train), p=prob))
            frames = rng.choice(train[k].nframes, size=min(batch_size, train[k].nframes),
                                replace=False)
            batch = select_frames(train[k], np.sort(frames))
            lr_t = lr.value(step)
            # deepmd-kit: constant tensor weights; scheduled energy prefactors; both
            # rounded to float32 by its find_* flags (dp_weights)
            pref = dp_weights(pref_start if isinstance(pref_start, TensorPrefactors) else
                              scheduled_prefactors(pref_start, pref_limit, lr_t, lr.start_lr))
            done = step + 1
            # deepmd-kit displays the errors of the step's own forward pass (the model
            # before this update) at step 1 and every disp_freq steps
            show = root and disp_freq and (done % disp_freq == 0 or done == 1)
            trn_err = errors(model, batch, pref) if show else None
            _, g = batch_loss_and_grad(model, [batch], pref, comm=comm)
            set_flat_parameters(model, adam.step(flat_parameters(model), g, lr_t))
            out_of_time = time_limit is not None and time.perf_counter() - t0 >= time_limit
            stop_now, out_of_time = comm.any(stop["flag"], out_of_time)  # all ranks agree
            if show:
                trn = display_row(trn_err, keys, var_name)
                if valid:
                    vs = valid[(done // disp_freq) % len(valid)]
                    val = display_row(errors(model, select_frames(
                        vs, np.arange(min(valid_frames, vs.nframes))), pref), keys, var_name)
                else:
                    val = None
                if log:
                    log.write(done, lr_t, trn, val)
                if progress:
                    el = time.perf_counter() - t0
                    eta = el / (done - step0) * (numb_steps - done)
                    msg = "  ".join(f"{k} {v:.3e}" for k, v in sorted(trn.items()))
                    vmsg = ("  val " + "  ".join(f"{k} {v:.3e}" for k, v in sorted(val.items()))
                            if val else "")
                    progress(f"step {done:7d}  lr {lr_t:.2e}  trn {msg}{vmsg}  "
                             f"elapsed {el:.1f} s  eta {eta:.1f} s")
            if checkpoint and root and ((save_freq and done % save_freq == 0) or stop_now
                                        or out_of_time):
                save_checkpoint(checkpoint, model, done, adam, rng)
            if out_of_time:
                if progress:
                    progress(f"time limit {time_limit:.0f} s reached after step {done}")
                comm.check_identical(flat_parameters(model), "Adam parameters")
                return model
            if stop_now:
                raise KeyboardInterrupt(f"interrupted after step {done}; checkpoint "
                                        f"{checkpoint or '(none: no checkpoint path)'}")
        comm.check_identical(flat_parameters(model), "Adam parameters")
        if checkpoint and root:
            save_checkpoint(checkpoint, model, numb_steps, adam, rng)
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
        if log:
            log.close()
    return model


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
