"""Loads a script of ``examples/`` as a module, so tests can call its functions."""

import importlib.util
import pathlib
import sys

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str, module_name: str):
    """``examples/<name>.py`` imported as ``module_name`` (registered in ``sys.modules``, where
    dataclasses and Linen's transforms look their module up)."""
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
