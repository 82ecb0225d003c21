"""A researcher's own code without editing the package: ``plugins:`` modules and ``"<module>:<callable>"``.

``plugins: [mymodule, ...]`` in the parameters imports each module (from the working directory or
``PYTHONPATH``) before the parameters are validated and at the start of every job, so what it
registers on import exists everywhere: a certificate (:func:`tokencert.certificates.register`), and
anything else a module of the study looks up by name. An architecture is named directly:
``arch: "mymodule:factory"``, a callable ``(channels, num_classes) -> nn.Module``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
"""``<module>:<callable>``."""


def _importable() -> None:
    """The working directory (the workflow's) on the import path, as for ``python -m``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def load_plugins(config: Mapping[str, Any]) -> None:
    """Import every module of ``config["plugins"]``; raises ``ValueError`` naming the entry."""
    _importable()
    for i, name in enumerate(config.get("plugins") or []):
        try:
            importlib.import_module(str(name))
        except Exception as exc:  # any failure of a user's module is one line naming it
            raise ValueError(f"params: plugins[{i}] '{name}' cannot be imported: {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}") from exc


def load_callable(spec: str, key: str, *example_args: Any) -> Callable[..., Any]:
    """The callable named ``"<module>:<name>"`` at parameter ``key``; with ``example_args``, checked to
    accept them. Raises ``ValueError`` naming the key."""
    if not SPEC.match(spec):
        raise ValueError(f"params: {key} '{spec}' is not '<module>:<callable>'")
    module, _, attr = spec.partition(":")
    _importable()
    try:
        found = getattr(importlib.import_module(module), attr)
    except Exception as exc:
        raise ValueError(f"params: {key} '{spec}' cannot be loaded: {type(exc).__name__}: "
                         f"{' '.join(str(exc).split())}") from exc
    if not callable(found):
        raise ValueError(f"params: {key} '{spec}' is not callable")
    if example_args:
        try:
            inspect.signature(found).bind(*example_args)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params: {key} '{spec}' must accept {len(example_args)} arguments: {exc}") from exc
    return found
