"""Training: deepmd-kit's losses with exact gradients, optimisers and fit loops.

``loss``      energy/force/virial and tensor losses and their exact parameter gradients
``stats``     statistics before training: davg/dstd of the environment rows and the energy
              bias (or tensor shift), as deepmd-kit computes them from the training data
``optim``     learning-rate and prefactor schedules, Adam
``fit``       L-BFGS and Adam fit loops, checkpoints
``lcurve``    ``lcurve.out`` in deepmd-kit's layout (fixed columns, nan, restarts)
``parallel``  data-parallel training across MPI ranks (rank-independent sums)
``report``    ``symref test`` / ``symref plot``: errors, parity plots, learning curves
``run``       ``symref train input.json``: :func:`~symref.train.run.train_from_input`

The parameter layout (which arrays are trained, the flat vector θ the optimisers
see, naming the gradients) lives in :mod:`symref.model.params`.

May import: ``symref.reference``, ``symref.fast``, ``symref.model`` and ``symref.io``.
"""
