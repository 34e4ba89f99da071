"""symref's version (one place: the package, pyproject and model files read it)."""

__version__ = "0.1.0"
