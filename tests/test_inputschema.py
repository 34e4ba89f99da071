"""symref.io.inputschema / symref.io.inputfile: input.json read as deepmd-kit 3.x's dp train reads it."""
from __future__ import annotations

import copy
import json

import pytest

from symref.io.inputfile import batch_size, read_input
from symref.io.inputschema import (DESCRIPTORS, FITTINGS, LEARNING_RATE, LOSS_ENER, LOSS_TENSOR,
                                   MODEL, TRAINING, TRAINING_DATA, VALIDATION_DATA, normalize)


def minimal(fitting=None, loss=None):
    """The smallest deepmd-kit input: everything else from the defaults."""
    cfg = {"model": {"type_map": ["O", "H"], "descriptor": {"type": "se_e2_a"},
                     "fitting_net": fitting or {}},
           "learning_rate": {"start_lr": 1e-3},
           "training": {"training_data": {"systems": ["a"]}, "numb_steps": 10}}
    if loss is not None:
        cfg["loss"] = loss
    return cfg


def _section(cfg, path):
    """The dict at key path ``path`` ("" for the top) of ``cfg``, created when absent."""
    node = cfg
    for part in [p for p in path.split(".") if p]:
        node = node.setdefault(part, {})
    return node


CASES = [(None, None), ({"type": "dipole"}, {"type": "tensor", "pref": 1, "pref_atomic": 1}),
         ({"type": "polar", "fit_diag": False}, {"type": "tensor", "pref": 0, "pref_atomic": 2})]


@pytest.mark.deepmd
@pytest.mark.parametrize("fitting,loss", CASES)
def test_defaults_are_deepmd_kits(fitting, loss):
    """normalize fills in exactly what deepmd-kit's normalize does: the same keys with the
    same values in every section (so a file relying on defaults builds dp's network)."""
    argcheck = pytest.importorskip("deepmd.utils.argcheck")
    for extra in ({}, {"training": {"validation_data": {"systems": "b"}, "seed": 3}}):
        cfg = minimal(fitting, loss)
        for k, v in extra.get("training", {}).items():
            cfg["training"][k] = v
        ref = argcheck.normalize(copy.deepcopy(cfg))
        out, warnings = normalize(copy.deepcopy(cfg))
        if "loss" not in cfg:  # dp builds its default loss; symref writes it out
            ref["loss"] = argcheck.normalize(dict(copy.deepcopy(cfg), loss={}))["loss"]
        assert out == ref and warnings == []


HYBRID = {"type": "hybrid", "list": [{"type": "se_e2_a", "rcut": 4.0, "sel": [8, 16]},
                                      {"type": "se_r", "neuron": [4, 8]},
                                      {"type": "se_at", "rcut": 3.0, "rcut_smth": 2.0}]}


@pytest.mark.deepmd
@pytest.mark.parametrize("descriptor", [{"type": "se_e2_r"}, {"type": "se_r", "sel": [4, 8]},
                                        {"type": "se_e3"}, {"type": "se_at", "rcut": 4.0},
                                        HYBRID])
def test_other_descriptor_types_are_read_as_deepmd_kit_reads_them(descriptor):
    """se_e2_r, se_e3 and hybrid sections (aliases se_r / se_at renamed, a hybrid's members
    each with their own defaults) normalise to deepmd-kit's own result."""
    argcheck = pytest.importorskip("deepmd.utils.argcheck")
    cfg = minimal()
    cfg["model"]["descriptor"] = copy.deepcopy(descriptor)
    ref = argcheck.normalize(copy.deepcopy(cfg))
    out, warnings = normalize(copy.deepcopy(cfg))
    ref["loss"] = argcheck.normalize(dict(copy.deepcopy(cfg), loss={}))["loss"]
    assert out == ref and warnings == []


def test_hybrid_members_are_checked_by_their_own_type_and_path():
    """A typo, a bad range or an unimplemented type inside a hybrid member is refused
    naming model.descriptor.list[k]; a hybrid inside a hybrid is refused."""
    for member, exc, msg in [
            ({"type": "se_e2_r", "axis_neuron": 4}, ValueError,
             r"descriptor.list\[1\].axis_neuron: unknown key"),
            ({"type": "se_e3", "rcut": 2.0, "rcut_smth": 3.0}, ValueError,
             r"descriptor.list\[1\].rcut_smth = 3.0: must be smaller"),
            ({"type": "se_e2_a", "sel": [1, 2, 3]}, ValueError,
             r"descriptor.list\[1\].sel = \[1, 2, 3\]: needs one entry per type"),
            ({"type": "dpa2"}, ValueError, r"descriptor.list\[1\].type = 'dpa2': known"),
            ({"type": "hybrid", "list": [{}]}, ValueError, "a hybrid cannot hold a hybrid"),
            ("se_e2_a", TypeError, r"descriptor.list\[1\]: must be a JSON object")]:
        cfg = minimal()
        cfg["model"]["descriptor"] = {"type": "hybrid", "list": [{"type": "se_e2_a"}, member]}
        with pytest.raises(exc, match=msg):
            normalize(cfg)
    cfg = minimal()
    cfg["model"]["descriptor"] = {"type": "hybrid", "list": []}
    with pytest.raises(ValueError, match="descriptor.list: must hold at least one"):
        normalize(cfg)


@pytest.mark.deepmd
def test_cosine_learning_rate_is_read_as_deepmd_kit_reads_it():
    """learning_rate.type "cosine": the same normalised section as deepmd-kit's (no
    decay_steps/decay_rate/smooth), and decay_steps under it is an unknown key, as in dp."""
    argcheck = pytest.importorskip("deepmd.utils.argcheck")
    cfg = minimal()
    cfg["learning_rate"] = {"type": "cosine", "start_lr": 2e-3, "warmup_steps": 3}
    assert normalize(copy.deepcopy(cfg))[0]["learning_rate"] == \
        argcheck.normalize(copy.deepcopy(cfg))["learning_rate"]
    cfg["learning_rate"]["decay_steps"] = 10
    with pytest.raises(ValueError, match="learning_rate.decay_steps: unknown key"):
        normalize(cfg)


def _dp_keys(args):
    from dargs import Argument

    keys = set()
    for a in args:
        if isinstance(a, Argument):
            keys.add(a.name)
    return keys


@pytest.mark.deepmd
def test_every_deepmd_key_of_every_section_is_in_the_table():
    """Each section's table has exactly deepmd-kit's keys (so every key is checked: a
    key deepmd-kit knows is never 'unknown', and symref invents none); defaults equal."""
    a = pytest.importorskip("deepmd.utils.argcheck")
    from symref.io.inputschema import ABSENT, REQUIRED

    def sub(arg):
        return list(arg.sub_fields.values())

    desc = a.descrpt_variant_type_args().choice_dict
    fit = a.fitting_variant_type_args().choice_dict
    loss = a.loss_variant_type_args().choice_dict
    lr = a.learning_rate_args()
    tr = a.training_args()
    model_keys = [x for x in a.model_args().sub_fields.values()] + \
        sub(a.standard_model_args())
    pairs = [(SE_TABLE, sub(desc["se_e2_a"])), (DESCRIPTORS["se_e2_r"], sub(desc["se_e2_r"])),
             (DESCRIPTORS["se_e3"], sub(desc["se_e3"])),
             (DESCRIPTORS["hybrid"], sub(desc["hybrid"])), (FITTINGS["ener"], sub(fit["ener"])),
             (FITTINGS["dipole"], sub(fit["dipole"])), (FITTINGS["polar"], sub(fit["polar"])),
             (MODEL, model_keys),
             (LEARNING_RATE, sub(lr) + sub(a.learning_rate_variant_type_args().choice_dict["exp"])),
             (LOSS_ENER, sub(loss["ener"])), (LOSS_TENSOR, sub(loss["tensor"])),
             (TRAINING, sub(tr)), (TRAINING_DATA, sub(tr.sub_fields["training_data"])),
             (VALIDATION_DATA, sub(tr.sub_fields["validation_data"]))]
    for table, dp in pairs:
        want = {x.name for x in dp} - {"type"}
        have = set(table) - {"type"}
        assert have == want, (sorted(have - want), sorted(want - have))
        for x in dp:
            if x.name == "type":
                continue
            spec = table[x.name]
            if x.name in STRICTER:  # optional in dp's schema, required in practice
                assert spec.default is REQUIRED, x.name
            elif not x.optional:
                assert spec.default is REQUIRED, x.name
            elif str(x.default) == "_Flags.NONE":  # optional without a default
                assert spec.default is ABSENT, x.name
            else:
                assert spec.default == x.default, x.name
            assert set(spec.alias) == set(x.alias), x.name


SE_TABLE = DESCRIPTORS["se_e2_a"]
#: keys optional in deepmd-kit's schema that symref requires: type_map (dp reads it from
#: the data when absent), training_data (optional only for multi-task inputs), numb_steps
#: (dp also accepts numb_epoch, which symref does not implement)
STRICTER = {"type_map", "training_data", "numb_steps"}


def test_missing_keys_take_deepmd_kits_defaults():
    """The defaults the issue found wrong: type_one_side false, neuron [10, 20, 40],
    axis_neuron 4, fitting neuron [120]*3, rcut 6.0, sel "auto", stop_lr 5e-8."""
    out, _ = normalize(minimal())
    d, f = out["model"]["descriptor"], out["model"]["fitting_net"]
    assert (d["type_one_side"], d["neuron"], d["axis_neuron"], d["rcut"], d["sel"]) == \
        (False, [10, 20, 40], 4, 6.0, "auto")
    assert f["neuron"] == [120, 120, 120] and f["resnet_dt"] is True
    assert out["learning_rate"]["stop_lr"] == 5e-8
    assert out["loss"]["start_pref_f"] == 1000 and out["training"]["disp_freq"] == 1000


@pytest.mark.parametrize("act", ["gelu", "gelu_tf", "relu", "relu6", "softplus", "sigmoid",
                                 "silu", "silut", "silut:2.0", "linear", "none", "tanh"])
def test_activations_deepmd_kit_offers_build_that_network(act):
    """Every activation of deepmd-kit (silut with a threshold too) is accepted in descriptor
    and fitting_net and builds nets with it (hidden layers; the fitting output layer stays
    linear)."""
    from symref.model.build import build_model

    cfg = minimal({"activation_function": act, "neuron": [8, 8]})
    cfg["model"]["descriptor"].update(activation_function=act, sel=[4, 4], neuron=[4, 8])
    out, _ = normalize(cfg)
    model = build_model(out["model"], seed=0)
    assert model.descriptor.activation_function == model.fitting.activation_function == act
    assert {ly.activation for net in model.descriptor.embeddings for ly in net} == {act}
    assert [ly.activation for ly in model.fitting.nets[0]] == [act, act, "linear"]


TYPOS = [("model", "type_mapp", "type_map"), ("model.descriptor", "nueron", "neuron"),
         ("model.fitting_net", "resnet_td", "resnet_dt"), ("learning_rate", "start_rl", "start_lr"),
         ("loss", "start_pref_ff", "start_pref_f"), ("training", "disp_frq", "disp_freq"),
         ("training.training_data", "batchsize", "batch_size"), ("", "trainning", "training"),
         ("training.validation_data", "numb_bacth", "numb_batch")]


@pytest.mark.parametrize("section,typo,meant", TYPOS)
def test_a_typo_in_any_section_is_refused_by_name(section, typo, meant):
    """An unknown key is an error naming its path and the closest known key."""
    cfg = minimal()
    cfg["training"]["validation_data"] = {"systems": ["b"]}
    node = _section(cfg, section)
    node[typo] = node.pop(meant, 1) if meant in node else 1
    path = f"{section}.{typo}" if section else typo
    with pytest.raises(ValueError, match=rf"{path}: unknown key; did you mean '{meant}'"):
        normalize(cfg)


@pytest.mark.parametrize("section,key,value,msg", [
    ("model.descriptor", "activation_function", "silut:abc", "threshold .* finite number"),
    ("model.fitting_net", "activation_function", "custom_silu:nan", "finite number"),
    ("model.descriptor", "activation_function", "swish", "must be one of"),
    ("model.fitting_net", "numb_fparam", 1, "only the default, 0"),
    ("model.descriptor", "trainable", False, "not implemented"),
    ("loss", "start_pref_gf", 1.0, "not implemented"),
    ("learning_rate", "type", "wsd", "not implemented"),
    ("training", "numb_epoch", 3, "not implemented"),
    ("model", "type_embedding", {}, "not implemented"),
    ("model.descriptor", "precision", "float16", "not implemented"),
])
def test_known_but_unimplemented_keys_are_refused_by_name(section, key, value, msg):
    """deepmd-kit keys symref does not implement are errors (at non-default values), named."""
    cfg = minimal()
    _section(cfg, section)[key] = value
    with pytest.raises(ValueError, match=rf"{section}.{key} = .*{msg}"):
        normalize(cfg)


@pytest.mark.parametrize("section,key,value,exc,msg", [
    ("model.descriptor", "rcut", "six", TypeError, "expected float, got str"),
    ("model.descriptor", "rcut", float("inf"), ValueError, "finite number > 0"),
    ("model.descriptor", "neuron", [], ValueError, "non-empty list"),
    ("model.descriptor", "sel", [10], ValueError, "one entry per type"),
    ("model.descriptor", "sel", "automatic", ValueError, "'auto'"),
    ("model.descriptor", "rcut_smth", 7.0, ValueError, "smaller than rcut"),
    ("model.descriptor", "axis_neuron", 50, ValueError, "neuron\\[-1\\]"),
    ("model.descriptor", "resnet_dt", 1, TypeError, "expected bool"),
    ("loss", "start_pref_f", -1.0, ValueError, ">= 0"),
    ("training", "numb_steps", -5, ValueError, ">= 1"),
    ("training", "numb_steps", 2.5, TypeError, "expected int"),
    ("learning_rate", "start_lr", -1e-3, ValueError, "> 0"),
    ("training.training_data", "batch_size", 0, ValueError, ">= 1"),
])
def test_types_and_ranges_name_the_key_path(section, key, value, exc, msg):
    """Wrong types and out-of-range values: an error with the key path, before anything runs."""
    cfg = minimal()
    _section(cfg, section)[key] = value
    with pytest.raises(exc, match=rf"{section}.{key}.*{msg}"):
        normalize(cfg)


def test_required_keys_and_unknown_types():
    """numb_steps and start_lr are required (as in dp); an unknown descriptor type
    lists the supported ones; a deepmd-kit one symref lacks says so."""
    cfg = minimal()
    del cfg["training"]["numb_steps"]
    with pytest.raises(ValueError, match="training.numb_steps: required"):
        normalize(cfg)
    cfg = minimal()
    cfg["learning_rate"] = {}
    with pytest.raises(ValueError, match="learning_rate.start_lr: required"):
        normalize(cfg)
    cfg = minimal()
    cfg["model"]["descriptor"]["type"] = "se_e2_q"
    with pytest.raises(ValueError, match=r"descriptor.type = 'se_e2_q': unknown.*"
                       r"\['hybrid', 'se_e2_a', 'se_e2_r', 'se_e3'\]"):
        normalize(cfg)
    cfg["model"]["descriptor"]["type"] = "dpa3"
    with pytest.raises(ValueError, match="known to deepmd-kit but not implemented"):
        normalize(cfg)
    cfg = minimal(loss={"type": "ener"}, fitting={"type": "dipole"})
    with pytest.raises(ValueError, match="loss.type = 'ener' does not fit a 'dipole'"):
        normalize(cfg)


def test_aliases_comments_noop_warnings_and_symref_optimizer():
    """deepmd-kit's aliases are renamed, _comments dropped, keys without effect warned
    about by name; symref's lbfgs optimizer needs no learning_rate."""
    cfg = minimal()
    cfg["_comment"] = "x"
    cfg["training"]["stop_batch"] = 7
    del cfg["training"]["numb_steps"]
    cfg["training"]["tensorboard"] = True
    cfg["model"]["descriptor"]["n_axis_neuron"] = 8
    out, warnings = normalize(cfg)
    assert out["training"]["numb_steps"] == 7 and out["model"]["descriptor"]["axis_neuron"] == 8
    assert "_comment" not in out
    assert warnings == ["training.tensorboard = True has no effect in symref (default False)"]
    del cfg["learning_rate"]
    cfg["optimizer"] = {"type": "lbfgs", "time_limit": 5}
    out, _ = normalize(cfg)
    assert out["optimizer"] == {"type": "lbfgs", "maxiter": None, "standardize": True,
                                "maxcor": 50, "time_limit": 5}
    assert "learning_rate" not in out
    cfg["optimizer"] = {"type": "AdamW"}
    with pytest.raises(ValueError, match="optimizer.type = 'AdamW': known to deepmd-kit"):
        normalize(cfg)


def test_read_input_names_the_file_and_resolves_paths(tmp_path):
    """read_input: the file in every message, systems relative to the file."""
    cfg = minimal()
    cfg["model"]["descriptor"]["nueron"] = [4]
    (tmp_path / "in.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"in.json: model.descriptor.nueron: unknown key"):
        read_input(tmp_path / "in.json")
    (tmp_path / "in.json").write_text(json.dumps(minimal()))
    out, _ = read_input(tmp_path / "in.json")
    assert out["training"]["training_data"]["systems"] == [str(tmp_path / "a")]
    assert [batch_size(s, 6) for s in ("auto", "auto:64", 3)] == [6, 11, 3]
