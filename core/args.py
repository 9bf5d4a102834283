"""Checking a job's arguments against its script's schema, with the offending field named."""
from __future__ import annotations

from typing import Any

import jsonschema

_HINT_KEYS = {"order"}  # our own annotations, not JSON Schema keywords
_validators: dict[str, Any] = {}  # by script hash: a version's schema never changes


class ArgsError(ValueError):
    def __init__(self, field: str | None, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _validator(key: str, schema: dict[str, Any]):
    v = _validators.get(key)
    if v is None:
        clean = {k: val for k, val in schema.items() if k not in _HINT_KEYS}
        v = jsonschema.validators.validator_for(clean)(clean)
        if len(_validators) > 4096:
            _validators.clear()
        _validators[key] = v
    return v


def check_args(key: str, schema: dict[str, Any], args: Any) -> dict[str, Any]:
    """Return ``args`` with schema defaults filled in, or raise ArgsError naming the first bad field.

    ``key`` identifies the schema (the script's version hash) so its validator is built once.
    """
    if not isinstance(args, dict):
        raise ArgsError(None, "arguments must be a JSON object")
    errors = sorted(_validator(key, schema).iter_errors(args), key=lambda e: list(e.path))
    if errors:
        err = errors[0]
        props = schema.get("properties", {})
        if err.validator == "required":
            field = next((r for r in schema.get("required", []) if r not in args), None)
            raise ArgsError(field, f"missing required argument {field!r}")
        if err.validator == "additionalProperties":
            field = next(iter(sorted(set(args) - set(props))), None)
            raise ArgsError(field, f"unknown argument {field!r}; expected one of {sorted(props)}")
        field = ".".join(str(p) for p in err.path) or None
        raise ArgsError(field, f"argument {field!r}: {err.message}")
    filled = dict(args)
    for name, prop in schema.get("properties", {}).items():
        if name not in filled and "default" in prop:
            filled[name] = prop["default"]
    return filled
