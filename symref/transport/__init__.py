r"""Steady transport on a family of periodic hill channels, and VCNN closures for it.

The seed's second example: a concentration :math:`c` carried by a steady,
incompressible flow :math:`u`, diffusing and reacting,

.. math::  \Delta c - \nabla\cdot(u\,c) + S(c) = 0, \qquad
           S(c) = s(x) - k_1 c - k_2 c^2,

where the production :math:`s = \beta\,|\nabla u|_F^2` is large where the flow is
strained (at the hill).  Because :math:`c` is carried downstream before it decays,
:math:`c(x_0)` depends on the flow in a whole *upstream* region: a closure that
sees a cloud of points around :math:`x_0` can predict it, a local one cannot.

Everything is dimensionless (lengths in hill heights, unit diffusivity; the
Péclet number is the volume flux ``flux`` over the unit diffusivity).

=============  ===============================================================
``flow``       the geometry (:class:`HillChannel`), its mapped :class:`Grid`, the
               conservative finite-volume operators and the potential flow
               (:func:`solve_flow`)
``navier_stokes``  the steady viscous flow (:func:`solve_navier_stokes`, stream
               function–vorticity, Newton), its verification
               (:func:`verify_navier_stokes`) and the separated region
``solver``     the reaction :math:`S(c)` (:class:`Reaction`), Newton's method on the
               discrete transport equation (:func:`solve_transport`) and the
               manufactured-solution verification (:func:`verify`)
``features``   the fields of the VCNN paper's per-point features (wall distance,
               strain rate, cell area) and its feature set (:func:`paper_cloud`)
``clouds``     point sets in the fluid with interpolated fields (:func:`point_set`),
               the upstream ellipses and the VCNN clouds (:func:`build_clouds`)
``study``      the cloud-size study (:class:`StudyConfig`, :func:`run_study`), its
               summary and figures, and ``symref transport`` (:func:`cli`)
=============  ===============================================================

Each module's docstring holds its part of the mathematics; they read in the
order above (each imports only the ones before it).

May import: numpy, scipy, matplotlib (figures only), ``symref.vcnn`` (the
closures), ``symref.io`` (atomic writes) and ``symref.fast.blas`` (one BLAS
thread per training process).  Never ``symref.train``.

Every public name is re-exported here: ``symref.transport.X`` works for all of them.
"""
from symref.transport.clouds import (SELECTIONS, CoefficientEllipse, Ellipse, PointSet,
                                     build_clouds, cloud_members, grid_sampler, interpolate,
                                     point_set, sample_points, stencil_offsets)
from symref.transport.features import (EXTRA_FIELDS, FEATURE_SETS, extra_fields, paper_cloud,
                                       strain_rate_magnitude, wall_distance)
from symref.transport.flow import (Flow, Grid, HillChannel, advection_operator, diffusion_operator,
                                   discrete_divergence, solve_flow, solve_poisson_vertices,
                                   velocity_from_psi)
from symref.transport.navier_stokes import (NavierStokesFlow, manufactured_flow, richardson,
                                             solve_navier_stokes, verify_navier_stokes,
                                             wall_crossings)
from symref.transport.solver import (Reaction, TransportSolution, manufactured, observed_orders,
                                     solve_transport, verify)
from symref.transport.study import (StudyConfig, cli, format_summary, frame_check, rel_l2,
                                    run_study, solve_member)

__all__ = [
    "HillChannel", "Grid", "diffusion_operator", "advection_operator", "discrete_divergence",
    "Flow", "solve_flow", "solve_poisson_vertices", "velocity_from_psi",
    "NavierStokesFlow", "solve_navier_stokes", "verify_navier_stokes", "manufactured_flow",
    "wall_crossings", "richardson",
    "Reaction", "TransportSolution", "solve_transport", "manufactured", "observed_orders",
    "verify",
    "interpolate", "sample_points", "PointSet", "point_set", "Ellipse", "CoefficientEllipse",
    "cloud_members", "SELECTIONS", "grid_sampler", "stencil_offsets",
    "build_clouds",
    "FEATURE_SETS", "EXTRA_FIELDS", "wall_distance", "strain_rate_magnitude", "extra_fields",
    "paper_cloud",
    "StudyConfig", "solve_member", "rel_l2", "frame_check", "run_study", "format_summary", "cli",
]
