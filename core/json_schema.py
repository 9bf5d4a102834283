"""Checking a JSON value against a JSON Schema, reporting the first offending field by its dotted path."""
from __future__ import annotations

from typing import Any

import jsonschema


def validator_for(schema: dict[str, Any]):
    return jsonschema.validators.validator_for(schema)(schema)


def first_error(validator, value: Any, prefix: str) -> tuple[str, str] | None:
    """(field, message) of the first error, the field as ``prefix.a.b`` (a missing key is named too)."""
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if not errors:
        return None
    err = errors[0]
    path = ".".join(str(p) for p in err.path)
    if err.validator == "required":
        missing = next((r for r in err.validator_value if r not in (err.instance or {})), None)
        path = ".".join(p for p in (path, missing) if p)
    field = prefix + (f".{path}" if path else "")
    return field, f"{field}: {err.message}"
