"""Files: deepmd-kit model files, npy systems, ``input.json``, format conversion.

``model_file``  deepmd-kit 3.x model files (``.dp``/``.yaml``/``.json``), atomic writes
``model_dict``  the serialized model dict (``model.serialize()``) <-> symref models
``data``        deepmd-kit npy systems (read, write, split) and small built-in systems
``inputfile``   deepmd-kit's ``input.json``, read as ``dp train`` reads it
``inputschema`` deepmd-kit 3.x's input schema: defaults, key checks, types and ranges
``neighbor_stat`` neighbour counts of npy systems, ``sel: "auto"``, ``symref neighbor-stat``
``convert``     ASE-readable files <-> npy systems
``golden``      golden vectors for porters: every stage of one frame, and their comparison
``compress``    ``symref compress``: minimum neighbour distance, tables into a model file

May import: ``symref.reference`` and ``symref.model``.  Never ``symref.train``
or the applications.
"""

from symref.io.model_file import atomic_write, load_model, read_model_file, save_model, write_model_file

__all__ = ["atomic_write", "load_model", "read_model_file", "save_model", "write_model_file"]
