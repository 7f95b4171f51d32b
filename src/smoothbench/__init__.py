"""smoothbench: a reproduction pipeline for Mezzini's empirical study on label smoothing."""


def _version() -> str:
    """The version pyproject.toml states, its one place: read from the checkout's
    pyproject.toml when the package is imported from a source tree (the workflow puts
    the checkout's src/ first on sys.path, installed or not, and an editable install's
    metadata can lag behind an edit), else from the installed package's metadata."""
    import importlib.metadata
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        try:
            project = tomllib.loads(pyproject.read_text()).get("project", {})
        except (OSError, tomllib.TOMLDecodeError):
            project = {}
        if project.get("name") == "smoothbench" and "version" in project:
            return project["version"]
    try:
        return importlib.metadata.version("smoothbench")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


__version__ = _version()
