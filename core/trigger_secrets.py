"""Trigger credentials at rest: encrypted in the row, masked in the API, clear only where a trigger runs.

A trigger kind names the config fields that hold credentials (``TriggerKind.secret_paths``: dotted
paths such as ``auth.secret``). The store seals them with the :class:`~headrace.core.secrets.SecretBox`
on create and update; API reads show :data:`MASK`; an update that sends the mask back keeps the stored
value. Only the servers that run a trigger (the listener supervisor, the HTTP route table) open the
values, into an in-memory copy of the trigger. Rows written before encryption keep working: only
values that :func:`~headrace.core.secrets.is_encrypted` are decrypted, and the next update seals them.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .secrets import SecretError, is_encrypted

if TYPE_CHECKING:  # pragma: no cover
    from .secrets import SecretBox
    from .triggers import Trigger, TriggerKind

MASK = "********"
_MISSING = object()


def get_path(config: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or ``_MISSING``."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def set_path(config: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``config`` with ``path`` set; the dicts along the path are copied, never mutated."""
    head, _, rest = path.partition(".")
    if not rest:
        return {**config, head: value}
    return {**config, head: set_path(config[head], rest, value)}


def _present(kind: TriggerKind, config: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, value) of the kind's secret fields that this config holds as strings."""
    found = []
    for path in kind.secret_paths(config):
        value = get_path(config, path)
        if isinstance(value, str):
            found.append((path, value))
    return found


def mask(kind: TriggerKind, config: dict[str, Any]) -> dict[str, Any]:
    for path, _ in _present(kind, config):
        config = set_path(config, path, MASK)
    return config


def keep_masked(kind: TriggerKind, config: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """Each secret sent as MASK takes the stored value at the same path (still sealed)."""
    from .triggers import TriggerConfigError

    for path, value in _present(kind, config):
        if value != MASK:
            continue
        stored = get_path(old or {}, path)
        if not isinstance(stored, str):
            raise TriggerConfigError(path, f"send the {path.rsplit('.', 1)[-1]} itself, not its mask")
        config = set_path(config, path, stored)
    return config


async def seal(box: SecretBox | None, kind: TriggerKind, workspace_id: str, config: dict[str, Any],
               old: dict[str, Any] | None) -> dict[str, Any]:
    """The config to store: every clear secret encrypted.

    A value that is already sealed is kept only when it is the stored value at the same path (a kept
    mask, or a stored config sent back by core code); a sealed value from anywhere else is refused, so
    a client cannot plant another trigger's ciphertext.
    """
    from .triggers import TriggerConfigError

    for path, value in _present(kind, config):
        if is_encrypted(value):
            if get_path(old or {}, path) != value:
                raise TriggerConfigError(path, "send the secret itself, not an encrypted value")
            continue
        if box is None:
            raise RuntimeError(f"trigger kind {kind.id!r} has secrets but no SecretBox was given to the store")
        config = set_path(config, path, await box.encrypt(workspace_id, value))
    return config


async def open_trigger(box: SecretBox | None, kind: TriggerKind, trigger: Trigger) -> Trigger:
    """A copy of ``trigger`` whose sealed secrets are clear, for running it; never for API answers.

    Raises SecretError (which never holds the secret) when a value does not decrypt.
    """
    config = trigger.config
    for path, value in _present(kind, config):
        if not is_encrypted(value):
            continue  # written before encryption
        if box is None:
            raise SecretError(f"{path} is encrypted but this server has no secret box")
        try:
            clear = await box.decrypt(trigger.workspace_id, value)
        except SecretError as exc:
            raise SecretError(f"config.{path} of trigger {trigger.path!r}: {exc}") from None
        config = set_path(config, path, clear)
    return trigger if config is trigger.config else dataclasses.replace(trigger, config=config)
