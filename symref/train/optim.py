r"""Learning-rate schedule, loss-prefactor schedule and Adam, with deepmd-kit's conventions.

Exponential decay (deepmd-kit's ``learning_rate.type = "exp"``; ``"cosine"`` is
:class:`CosineLR`): after an
optional linear warm-up from ``warmup_start_factor · start_lr`` over
``warmup_steps`` steps,

.. math::

    lr(t) = \max\!\big(lr_0\, r^{\lfloor t/s \rfloor},\ lr_{stop}\big)
    \quad(\text{or } r^{t/s} \text{ with } smooth),\qquad
    r = \Big(\frac{\max(lr_{stop}, 10^{-10})}{lr_0}\Big)^{s/T},

:math:`t` counted from the end of the warm-up, :math:`T` = ``num_steps −
warmup_steps``, :math:`s` = ``decay_steps`` (reduced to
``100 if T // 10 > 100 else T // 100 + 1`` when it is not smaller than T and
no ``decay_rate`` is given).  Loss prefactors follow the learning rate:
:math:`p(t) = p_{limit} + (p_{start} - p_{limit})\, lr(t)/lr_0`.

Adam (Kingma & Ba; PyTorch's defaults β = (0.9, 0.999), ε = 1e-8) on a flat
float64 parameter vector, with its state as plain arrays so that a checkpoint
restores it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ExpDecayLR:
    """deepmd-kit's exponential learning-rate schedule (see the module docstring)."""

    start_lr: float
    num_steps: int
    stop_lr: float
    decay_steps: int = 5000
    decay_rate: float | None = None
    warmup_steps: int = 0
    warmup_start_factor: float = 0.0
    smooth: bool = False

    def __post_init__(self):
        if self.decay_steps <= 0:
            raise ValueError(f"decay_steps ({self.decay_steps}) must be positive")
        if self.warmup_steps < 0 or (self.num_steps > 0 and self.warmup_steps >= self.num_steps):
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be in [0, num_steps)")
        total = self.num_steps - self.warmup_steps
        if self.decay_rate is None and self.decay_steps >= total:
            self.decay_steps = 100 if total // 10 > 100 else total // 100 + 1
        if self.decay_rate is None:
            self.decay_rate = 1.0 if total == 0 else math.exp(
                math.log(max(self.stop_lr, 1e-10) / self.start_lr) / (total / self.decay_steps))

    def value(self, step: int) -> float:
        """Learning rate at (absolute) step ``step``."""
        if step < self.warmup_steps:
            return _warmup(self, step)
        t = step - self.warmup_steps
        expo = t / self.decay_steps if self.smooth else t // self.decay_steps
        return max(self.start_lr * self.decay_rate ** expo, self.stop_lr)


def _warmup(sched, step: int) -> float:
    """The linear warm-up shared by the schedules: from ``warmup_start_factor · start_lr``
    at step 0 to ``start_lr`` at ``warmup_steps``."""
    w0 = sched.warmup_start_factor * sched.start_lr
    return w0 + (sched.start_lr - w0) * step / sched.warmup_steps


@dataclass
class CosineLR:
    r"""deepmd-kit's ``learning_rate.type = "cosine"``: after the warm-up (as
    :class:`ExpDecayLR`), with :math:`t` counted from its end, :math:`T` =
    ``num_steps − warmup_steps`` and :math:`\alpha = lr_{stop}/lr_0`,

    .. math::  lr(t) = lr_0\,\big[\alpha + \tfrac12 (1-\alpha)(1 + \cos(\pi t/T))\big],

    and :math:`lr_{stop}` from :math:`t \ge T` on (:math:`lr_0` throughout when T = 0)."""

    start_lr: float
    num_steps: int
    stop_lr: float
    warmup_steps: int = 0
    warmup_start_factor: float = 0.0

    def __post_init__(self):
        if self.warmup_steps < 0 or (self.num_steps > 0 and self.warmup_steps >= self.num_steps):
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be in [0, num_steps)")

    def value(self, step: int) -> float:
        """Learning rate at (absolute) step ``step``."""
        if step < self.warmup_steps:
            return _warmup(self, step)
        t, total = step - self.warmup_steps, self.num_steps - self.warmup_steps
        if total == 0:
            return self.start_lr
        if t >= total:
            return self.stop_lr
        a = self.stop_lr / self.start_lr
        return self.start_lr * (a + 0.5 * (1 - a) * (1 + math.cos(math.pi * t / total)))


def prefactor(start: float, limit: float, lr: float, start_lr: float) -> float:
    """deepmd-kit's loss-prefactor schedule: ``limit + (start - limit) * lr / start_lr``."""
    return limit + (start - limit) * lr / start_lr


@dataclass
class Adam:
    """Adam on a flat parameter vector; ``step(x, g, lr)`` returns the new vector."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    t: int = 0
    m: np.ndarray | None = field(default=None, repr=False)
    v: np.ndarray | None = field(default=None, repr=False)
    _scratch: tuple | None = field(default=None, repr=False, compare=False)

    def step(self, x: np.ndarray, g: np.ndarray, lr: float) -> np.ndarray:
        if self.m is None:
            self.m, self.v = np.zeros_like(x), np.zeros_like(x)
        if g.shape != x.shape or self.m.shape != x.shape:
            raise ValueError(f"gradient shape {g.shape} / state shape {self.m.shape} "
                             f"do not match parameters {x.shape}")
        self.t += 1
        # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  x - lr mhat / (sqrt(vhat) + eps),
        # in place with two scratch vectors (fresh temporaries of this size are page-faulted
        # on every call: 21 ms against 3 ms for 400k parameters)
        m, v = self.m, self.v
        if self._scratch is None or self._scratch[0].shape != x.shape:
            self._scratch = (np.empty_like(x), np.empty_like(x))
        a, b = self._scratch
        m *= self.beta1
        np.multiply(g, 1 - self.beta1, out=a)
        m += a
        v *= self.beta2
        np.multiply(g, 1 - self.beta2, out=a)
        a *= g
        v += a
        np.divide(v, 1 - self.beta2 ** self.t, out=a)  # vhat
        np.sqrt(a, out=a)
        a += self.eps
        np.divide(m, 1 - self.beta1 ** self.t, out=b)  # mhat
        b *= lr
        b /= a
        return np.subtract(x, b)

    def state(self) -> dict:
        """Everything needed to resume exactly (arrays copied)."""
        return {"t": self.t, "m": None if self.m is None else self.m.copy(),
                "v": None if self.v is None else self.v.copy(),
                "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}

    @classmethod
    def from_state(cls, st: dict) -> "Adam":
        return cls(beta1=st["beta1"], beta2=st["beta2"], eps=st["eps"], t=int(st["t"]),
                   m=None if st["m"] is None else np.array(st["m"], dtype=np.float64),
                   v=None if st["v"] is None else np.array(st["v"], dtype=np.float64))
