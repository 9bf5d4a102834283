"""Resource types: the JSON Schema that a kind of resource's value must satisfy."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .json_schema import first_error, validator_for

# Types every workspace has: Windmill's clients save state as "state" and default to "any".
UNCHECKED = ("any", "state")


@dataclass(frozen=True)
class ResourceType:
    name: str
    schema: dict[str, Any] = field(default_factory=lambda: {"type": "object"})
    description: str = ""


class ResourceValueError(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class ResourceTypeCatalog:
    def __init__(self, types: list[ResourceType]):
        self.by_name: dict[str, ResourceType] = {}
        for t in types:
            self.by_name.setdefault(t.name, t)
        self._validators: dict[str, Any] = {}

    @classmethod
    def from_registry(cls, registry) -> "ResourceTypeCatalog":
        return cls([t for group in registry.hook.headrace_resource_types() for t in group])

    def names(self) -> list[str]:
        return sorted({*UNCHECKED, *self.by_name})

    def check(self, type_name: str, value: Any) -> None:
        """Raise ResourceValueError naming the first field of ``value`` that the type's schema refuses."""
        rtype = self.by_name.get(type_name)
        if rtype is None:
            return
        validator = self._validators.get(type_name)
        if validator is None:
            validator = self._validators[type_name] = validator_for(rtype.schema)
        error = first_error(validator, value, "value")
        if error is not None:
            field, message = error
            raise ResourceValueError(field, f"{message} (resource type {type_name!r})")
