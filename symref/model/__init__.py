"""What users hold: models assembled from the reference math, and their statistics.

``deeppot``  :class:`DeepPot` (energy, forces, virials) with ``evaluate(backend=...)``,
             :class:`DeepTensor` (dipole / polarizability), ``build_model``
``stats``    davg/dstd of the environment rows and the energy bias, as deepmd-kit computes them

May import: ``symref.reference`` and ``symref.fast`` (the evaluation backends).
Never ``symref.train``, ``symref.io`` or the applications.
"""
