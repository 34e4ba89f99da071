r"""deepmd-kit 3.x model files: ``.dp`` (HDF5), ``.yaml`` and ``.json``, written atomically.

The model dict inside a file (deepmd-kit's ``model.serialize()``), and its
conversion to and from symref models, is described in
:mod:`symref.io.model_dict`; its public functions are re-exported here.

Files.  ``save_dp_model``/``load_dp_model`` (deepmd/dpmodel/utils/serialization.py)
store a *wrapper* dict ``{"software", "version", "time", "backend", "model":
<the model dict>, "model_def_script": <the input config>, "@variables": {...}}``:

* ``.dp``: an HDF5 file whose root attribute ``json`` holds the wrapper as
  compact JSON; every value below an ``@variables`` key (arrays, and scalars
  such as ``min_nbor_dist``) is a root dataset ``/variable_NNNN`` (numbered in
  traversal order) and the JSON holds the dataset's name in its place.
  ``None`` stays ``null``.
* ``.yaml``/``.yml``: ``yaml.safe_dump`` of the wrapper with each array
  replaced by ``{"@class": "np.ndarray", "@is_variable": true, "@version": 1,
  "dtype": <name>, "value": <nested lists>}``.
* ``.json`` (symref only; deepmd-kit does not read it): the YAML layout as JSON.

Python floats round-trip exactly through JSON and YAML (shortest ``repr``), so
all three formats reproduce arrays bit for bit.

Public API: :func:`model_to_dict`, :func:`model_from_dict`, :func:`load_model`,
:func:`save_model`, plus :func:`read_model_file` / :func:`write_model_file` for
the raw wrapper dict.
"""
from __future__ import annotations

import datetime
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from symref.io.model_dict import _native, model_def_script, model_from_dict, model_to_dict
from symref.model.deeppot import DeepPot

__all__ = [
    "model_to_dict",
    "model_from_dict",
    "load_model",
    "save_model",
    "read_model_file",
    "write_model_file",
    "model_def_script",
    "SUFFIXES",
]

SUFFIXES = (".dp", ".yaml", ".yml", ".json")


def _symref_version() -> str:
    try:
        from symref._version import __version__

        return str(__version__)
    except Exception:  # pragma: no cover - partial package during development
        return "unknown"


# ---------------------------------------------------------------- file formats
def _import_optional(module: str, package: str, what: str):
    """Import an optional dependency or say which package and extra to install."""
    try:
        return __import__(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading or writing {what} model files needs the '{package}' "
                          "package: pip install 'symref[io]'") from e


def _import_h5py():
    return _import_optional("h5py", "h5py", ".dp")


def _import_yaml():
    return _import_optional("yaml", "pyyaml", ".yaml")


def _traverse_variables(obj, fn, is_var: bool = False):
    """Replace every leaf below an ``@variables`` key by ``fn(leaf)`` (deepmd-kit's rule).

    Containers are rebuilt (the input is not modified); ``None`` is kept;
    dicts flagged ``@is_variable`` are passed to ``fn`` whole.
    """
    if isinstance(obj, dict):
        if obj.get("@is_variable", False):
            return fn(obj)
        return {k: _traverse_variables(v, fn, is_var or k == "@variables")
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_traverse_variables(v, fn, is_var) for v in obj]
    if obj is None:
        return None
    if is_var:
        return fn(obj)
    return obj


def _array_to_tagged(x):
    if isinstance(x, (np.ndarray, np.generic)):
        x = np.asarray(x)
        return {"@class": "np.ndarray", "@is_variable": True, "@version": 1,
                "dtype": x.dtype.name, "value": x.tolist()}
    return _native(x)


def _tagged_to_array(x):
    if isinstance(x, dict) and x.get("@class") == "np.ndarray":
        return np.asarray(x["value"], dtype=np.dtype(x["dtype"]))
    return x


def _suffix(path: Path) -> str:
    suf = path.suffix.lower()
    if suf not in SUFFIXES:
        raise ValueError(f"{path}: unknown model file suffix {path.suffix!r}; "
                         f"expected one of {', '.join(SUFFIXES)}")
    return suf


def read_model_file(path) -> dict:
    """The raw dict stored in a ``.dp``/``.yaml``/``.yml``/``.json`` model file.

    Returns whatever the file holds -- for deepmd-kit files the wrapper
    ``{"software", "version", "time", "backend", "model", "model_def_script",
    "@variables"}`` -- with arrays restored as numpy arrays.
    """
    path = Path(path)
    suf = _suffix(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    if suf == ".dp":
        h5py = _import_h5py()
        try:
            with h5py.File(path, "r") as f:
                if "json" not in f.attrs:
                    raise ValueError(f"{path}: HDF5 file has no 'json' attribute; "
                                     "not a deepmd-kit .dp model file")
                raw = f.attrs["json"]
                if isinstance(raw, bytes):
                    raw = raw.decode("utf-8")
                try:
                    data = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: corrupt 'json' attribute: {e}") from e

                def fetch(name):
                    if not isinstance(name, str) or name not in f:
                        raise ValueError(f"{path}: variable dataset {name!r} is missing")
                    value = f[name][()]
                    return value.copy() if isinstance(value, np.ndarray) else value

                return _traverse_variables(data, fetch)
        except ValueError:
            raise
        except (OSError, KeyError, RuntimeError) as e:
            raise ValueError(f"{path}: cannot read as an HDF5 (.dp) model file "
                             f"(truncated or corrupt?): {e}") from e
    if suf in (".yaml", ".yml"):
        yaml = _import_yaml()
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster

        def text_loader(text):
            return yaml.load(text, Loader=loader)
    else:
        text_loader = json.loads
    try:
        data = text_loader(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text model file: {e}") from e
    except Exception as e:  # yaml.YAMLError / json.JSONDecodeError
        raise ValueError(f"{path}: cannot parse {suf} model file (truncated or corrupt?): "
                         f"{e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level is {type(data).__name__}, expected a mapping")
    try:
        return _traverse_variables(data, _tagged_to_array)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: malformed array entry: {e}") from e


def atomic_write(path: Path, write_fn) -> None:
    """Write via ``write_fn(tmp_path)`` to a temp file beside ``path``, fsync, rename.

    The file gets the usual permissions (0666 minus the umask), not mkstemp's 0600.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"{path}: directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        write_fn(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - e.g. platforms without directory fsync
        pass


def write_model_file(path, data: dict) -> None:
    """Atomically write a raw dict in deepmd-kit's file layout, format from the suffix."""
    path = Path(path)
    suf = _suffix(path)
    if suf == ".dp":
        h5py = _import_h5py()

        def write(tmp):
            counter = iter(range(10 ** 9))
            with h5py.File(tmp, "w") as f:
                def store(x):
                    name = f"variable_{next(counter):04d}"
                    return f.create_dataset(name, data=np.asarray(x)).name

                stored = _traverse_variables(_native_tree(data), store)
                f.attrs["json"] = json.dumps(stored, separators=(",", ":"))
    elif suf in (".yaml", ".yml"):
        yaml = _import_yaml()

        def write(tmp):
            tagged = _traverse_variables(_native_tree(data), _array_to_tagged)
            with open(tmp, "w", encoding="utf-8") as fh:
                # libyaml's emitter when present (same text, ~10x faster than pure Python)
                yaml.dump(tagged, fh, Dumper=getattr(yaml, "CSafeDumper", yaml.SafeDumper))
    else:
        def write(tmp):
            tagged = _traverse_variables(_native_tree(data), _array_to_tagged)
            with open(tmp, "w", encoding="utf-8") as fh:
                # json.dumps, not json.dump: only the one-shot call uses the C encoder
                fh.write(json.dumps(tagged, separators=(",", ":")))
    atomic_write(path, write)


def _native_tree(x):
    """Like :func:`_native` but keeps arrays and numpy scalars below ``@variables`` intact."""
    if isinstance(x, dict):
        return {str(k): (_native_vars(v) if k == "@variables" else _native_tree(v))
                for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_native_tree(v) for v in x]
    return _native(x)


def _native_vars(x):
    if isinstance(x, dict) and not x.get("@is_variable", False):
        return {str(k): _native_vars(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_native_vars(v) for v in x]
    return x


def load_model(path) -> DeepPot:
    """Read a deepmd-kit 3.x (or symref-written) ``.dp``/``.yaml``/``.yml``/``.json`` model.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` (message
    starting with the path) for an unknown suffix, a truncated or corrupt file,
    an unsupported version or an unsupported model feature.
    """
    path = Path(path)
    data = read_model_file(path)
    try:
        return check_finite(model_from_dict(data))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from e
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        raise ValueError(f"{path}: malformed model dict ({type(e).__name__}: {e})") from e


def check_finite(model):
    """``model``, after refusing what would give NaN outputs: a non-finite parameter,
    ``davg``, ``out_bias``/``out_std``, or a ``dstd`` entry that is not > 0 (the
    environment rows are divided by it).  ValueError naming the array and an index."""

    from symref.model.params import parameters

    d = model.descriptor
    members = [(f"model.descriptor.list[{k}]", m) for k, m in enumerate(d.members)] \
        if hasattr(d, "members") else [("model.descriptor", d)]  # a hybrid: its members'
    arrays = [(f"model.{n}", a) for n, a in parameters(model)] + \
        [(f"{where}.davg", m.davg) for where, m in members] + \
        [("model.out_bias", model.out_bias), ("model.out_std", model.out_std)]
    for name, a in arrays:
        a = np.asarray(a)
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(f"{name}{[int(i) for i in np.argwhere(bad)[0]]} is {a[bad][0]} "
                             "(not finite)")
    for where, m in members:
        dstd = np.asarray(m.dstd)
        bad = ~(np.isfinite(dstd) & (dstd > 0))
        if bad.any():
            t, j, c = np.argwhere(bad)[0]
            raise ValueError(f"{where}.dstd[{t}, {j}, {c}] is {dstd[t, j, c]}: every dstd "
                             "entry must be finite and > 0 (the environment matrix is "
                             "divided by it; deepmd-kit's statistics never give less than "
                             "1e-2)")
    return model


def save_model(model: DeepPot, path, *, variables: dict | None = None) -> None:
    """Write ``model`` atomically in deepmd-kit's layout; format from the suffix.

    The file holds ``{"software": "symref", "version", "time", "backend":
    "symref", "model": model_to_dict(model), "model_def_script",
    "@variables": {}}``, which deepmd-kit's ``load_dp_model`` reads and
    ``BaseModel.deserialize(data["model"])`` (or ``DeepPot("file.dp")`` for
    ``.dp``/``.yaml``) turns into a working model.  ``variables``: the wrapper's
    ``@variables`` (deepmd-kit keeps ``min_nbor_dist`` there).
    """
    path = Path(path)
    _suffix(path)
    data = {
        "software": "symref",
        "version": _symref_version(),
        "time": str(datetime.datetime.now(tz=datetime.timezone.utc)),
        "backend": "symref",
        "model": model_to_dict(model),
        "model_def_script": model_def_script(model),
        "@variables": dict(variables or {}),
    }
    write_model_file(path, data)
