"""Loading the parameters and validating them against the schema shipped with the package
(``tokencert/params.schema.yaml``; attack, objective, architecture and vocabulary-kind names, and
the certificates' sections, filled in from the code and the plugins), naming the offending key."""

from __future__ import annotations

import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ..certificates import CERTIFICATES, PER_MODEL
from ..plugins import SPEC, load_plugins
from ..study import ARCHITECTURES, ATTACKS, OBJECTIVE_PARAMETERS, VOCABULARY_KINDS
from .checks import check_references
from .errors import ConfigError
from .recipes import deep_merge

SCHEMA_PATH = Path(str(resources.files("tokencert") / "params.schema.yaml"))

# JSON Schema counts 4.0 as an integer; a count, a size or a seed written 4.0 is a mistake here
Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)))


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Read the parameter schema; attack and objective names come from :mod:`tokencert.study`, the
    certificates' sections from :mod:`tokencert.certificates`."""
    with open(path, encoding="utf-8") as fh:
        schema = yaml.safe_load(fh)
    schema["definitions"]["attack"] = {"enum": list(ATTACKS)}
    schema["definitions"]["objective"] = {"enum": list(OBJECTIVE_PARAMETERS)}
    schema["definitions"]["vocabulary"]["properties"]["kind"] = {"enum": list(VOCABULARY_KINDS)}
    for keys in VOCABULARY_KINDS.values():  # a plugin kind's own recipe keys
        for key, rule in keys.items():
            schema["definitions"]["vocabulary"]["properties"].setdefault(key, rule)
    for attack in ATTACKS:  # a plugin attack's settings: attacks.<name>
        schema["properties"]["attacks"]["properties"].setdefault(attack, {"type": "object"})
    schema["definitions"]["arch"] = {"anyOf": [{"enum": ["auto", *ARCHITECTURES]},
                                               {"type": "string", "pattern": SPEC.pattern}]}
    for cert in CERTIFICATES.values():  # each certificate's params section (a plugin's: its own schema)
        section = schema["properties"].setdefault(cert.folder, {"type": "object", **dict(cert.schema or {})})
        keys = {k: v for k, v in section.get("properties", {}).items() if k != PER_MODEL}
        override = {"type": ["object", "null"], **({"additionalProperties": False, "properties": keys} if keys else {})}
        section.setdefault("properties", {})[PER_MODEL] = {
            "type": "object", "additionalProperties": override,
            "description": "per-classifier overrides of this section's keys: models.<classifier>.<key> "
                           "(null: none, e.g. a stacked config dropping params.yaml's)"}
    return schema


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def validate(config: Mapping[str, Any], schema_path: str | Path = SCHEMA_PATH) -> None:
    """Validate ``config`` against the schema and the cross-references between sections.

    Raises :class:`ConfigError` naming the offending key.
    """
    try:
        load_plugins(config)  # what they register (certificates) is part of the schema
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _check_finite(config, [])
    schema = load_schema(schema_path)
    errors = sorted(Validator(schema).iter_errors(dict(config)), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        message = err.message if err.validator not in ("anyOf", "oneOf") else "; or ".join(
            e.message for e in err.context)
        raise ConfigError(f"params: invalid value at '{_key_path(err)}': {message}")
    check_references(config)


def _check_finite(value: Any, path: list[str]) -> None:
    """No NaN or infinity anywhere (YAML's ``.nan`` / ``.inf`` pass a JSON schema's bounds)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"params: invalid value at '{'.'.join(path) or '<top level>'}': {value} is not a finite "
                          "number")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, [*path, str(key)])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(item, [*path, str(i)])


def retype_command_line(config: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Give nested command-line overrides (``--config "training={epochs: 3}"``) the types a YAML
    file would give them: Snakemake parses their leaves as strings. Changes ``config`` in place."""
    def retype(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: retype(v) for k, v in value.items()}
        if isinstance(value, list):
            return [retype(v) for v in value]
        return yaml.safe_load(value) if isinstance(value, str) else value

    def apply(target: dict[str, Any], given: Mapping[str, Any], top: bool) -> None:
        for key, value in given.items():
            if isinstance(value, Mapping) and isinstance(target.get(key), dict):
                apply(target[key], value, False)
            elif isinstance(value, (Mapping, list)) or not top:  # top-level scalars are typed already
                target[key] = retype(value)

    apply(config, overrides, True)


def load_params(path: str | Path, *overrides: str | Path) -> dict[str, Any]:
    """Load ``params.yaml`` merged with override files (in order) and validate it."""
    with open(path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh) or {}
    for extra in overrides:
        with open(extra, encoding="utf-8") as fh:
            config = deep_merge(config, yaml.safe_load(fh) or {})
    validate(config)
    return config
