"""``symref show MODEL [ATTR...]``: what a model file holds, as ``dp show`` prints it.

Attributes (all by default): ``type-map``, ``descriptor`` and ``fitting-net`` (the
``model`` section of an input.json that builds this model, deepmd-kit's
``model_def_script``), ``size`` (trainable parameters of the descriptor, the fitting
net and in total), and symref's ``summary`` (cutoff, sel, precision, model kind, and
whether the descriptor is compressed).
"""
from __future__ import annotations

ATTRIBUTES = ("type-map", "descriptor", "fitting-net", "size", "summary")


def show_lines(model, attributes=ATTRIBUTES) -> list[str]:
    """The lines ``symref show`` prints for ``model``."""
    from symref.io.model_dict import model_def_script
    from symref.model.params import parameters

    script = model_def_script(model)
    out = []
    if "type-map" in attributes:
        out.append(f"The type_map is {list(model.type_map)}")
    if "descriptor" in attributes:
        out.append(f"The descriptor parameter is {script['descriptor']}")
    if "fitting-net" in attributes:
        out.append(f"The fitting_net parameter is {script['fitting_net']}")
    if "size" in attributes:
        sizes = {"descriptor": 0, "fitting-net": 0}
        for name, a in parameters(model):
            sizes["descriptor" if name.startswith("embedding") else "fitting-net"] += a.size
        out.append("Parameter counts:")
        for k, v in sizes.items():
            out.append(f"Parameters in {k}: {v:,}")
        out.append(f"Parameters in total: {sum(sizes.values()):,}")
    if "summary" in attributes:
        from symref.io.compress import descriptor_tables
        from symref.reference.descriptor.dispatch import descriptor_ops

        d = model.descriptor
        kind = getattr(model, "var_name", "energy")
        smth = f" (rcut_smth {d.rcut_smth})" if hasattr(d, "rcut_smth") else ""
        out.append(f"symref: {kind} model, descriptor {descriptor_ops(d).name}, rcut {d.rcut} Å"
                   f"{smth}, sel {list(d.sel)}, precision "
                   f"{d.precision} / {model.fitting.precision}, "
                   f"{'compressed (tabulated)' if descriptor_tables(d) else 'not compressed'}")
    return out


def cli(args) -> int:
    from symref.io.model_file import load_model

    attrs = args.attributes or ATTRIBUTES
    bad = [a for a in attrs if a not in ATTRIBUTES]
    if bad:
        raise ValueError(f"unknown attribute(s) {bad}; choose from {list(ATTRIBUTES)}")
    print(f"symref show: {args.model}")
    for line in show_lines(load_model(args.model), attrs):
        print(line)
    return 0
