"""The ``model.descriptor`` section of a deepmd-kit input that builds a given descriptor.

:func:`symref.io.model_dict.model_def_script` stores it in model files (deepmd-kit's
converters need it); the weights come from the serialized dict, not from here.
"""
from __future__ import annotations

from symref.reference.descriptor.hybrid import Hybrid
from symref.reference.descriptor.se_e2_r import SeE2R
from symref.reference.descriptor.se_e3 import SeE3


def descriptor_script(desc) -> dict:
    """The input ``descriptor`` section (deepmd-kit's ``model.descriptor`` keys) of a symref
    descriptor: se_e2_a, se_e2_r, or a hybrid (``{"type": "hybrid", "list": [...]}``)."""
    if isinstance(desc, Hybrid):
        return {"type": "hybrid", "list": [descriptor_script(m) for m in desc.members]}
    return {
        "type": {SeE2R: "se_e2_r", SeE3: "se_e3"}.get(type(desc), "se_e2_a"),
        "sel": list(desc.sel),
        "rcut": desc.rcut,
        "rcut_smth": desc.rcut_smth,
        "neuron": list(desc.neuron),
        **({} if isinstance(desc, (SeE2R, SeE3)) else {"axis_neuron": desc.axis_neuron}),
        "resnet_dt": desc.resnet_dt,
        **({} if isinstance(desc, SeE3) else {"type_one_side": desc.type_one_side}),
        "exclude_types": [list(p) for p in desc.exclude_types],
        "env_protection": desc.env_protection,
        "set_davg_zero": desc.set_davg_zero,
        "activation_function": desc.activation_function,
        "precision": desc.precision,
        "trainable": desc.trainable,
    }
