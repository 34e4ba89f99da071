"""What users hold: models assembled from the reference math.

``deeppot``  :class:`DeepPot` (energy, forces, virials) with ``evaluate(backend=...)``,
             :class:`DeepTensor` (dipole / polarizability), ``build_model``

May import: ``symref.reference`` and ``symref.fast`` (the evaluation backends).
Never ``symref.train``, ``symref.io`` or the applications.
"""
