"""Secrets at rest: AES-256-GCM under per-workspace data keys, each wrapped by the server's master key.

A stored secret reads ``enc:v1:<base64(nonce | ciphertext+tag)>``. The workspace id is the associated
data, so a value copied into another workspace does not decrypt. A workspace's data key is made on first
use and stored wrapped (``nonce | AES-GCM(master, key)``) in ``workspaces.wrapped_key``; rotating the
master key only means re-wrapping those rows.
"""
from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from .config import Settings
from .schema import workspaces

PREFIX = "enc:v1:"
NONCE_BYTES = 12
KEY_BYTES = 32
MASTER_KEY_FILE = "master.key"
# Wrapped data keys are bound to their workspace with their own associated-data label.
_WRAP_AAD = b"headrace-workspace-key:"


class SecretError(ValueError):
    """A secret cannot be read: malformed, tampered with, or encrypted under another key."""


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _decode_master_key(text: str, origin: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"{origin} is not valid base64 (expected base64 of 32 random bytes)") from None
    if len(key) != KEY_BYTES:
        raise SecretError(f"{origin} must be base64 of exactly {KEY_BYTES} bytes, got {len(key)} bytes")
    return key


def _read_or_create_key_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        key = os.urandom(KEY_BYTES)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(key).decode() + "\n")
        try:
            # link() publishes the complete file or fails if another process won: two servers starting
            # at once on one data dir never use two keys, and none reads a half-written file.
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return _decode_master_key(path.read_text(), str(path))


class SecretBox:
    """AES-256-GCM (PyPI cryptography) under per-workspace data keys, each wrapped by one master key."""

    def __init__(self, engine: AsyncEngine, master_key: bytes):
        if len(master_key) != KEY_BYTES:
            raise SecretError(f"the master key must be {KEY_BYTES} bytes")
        self._engine = engine
        self._master = AESGCM(master_key)
        self._keys: dict[str, AESGCM] = {}

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @staticmethod
    def load_master_key(settings: Settings) -> bytes:
        """HEADRACE_MASTER_KEY (settings.master_key), else data_dir/master.key, created 0600 when missing."""
        if settings.master_key:
            return _decode_master_key(settings.master_key, "HEADRACE_MASTER_KEY")
        return _read_or_create_key_file(Path(settings.data_dir) / MASTER_KEY_FILE)

    async def encrypt(self, workspace_id: str, plaintext: str) -> str:
        aead = await self._data_key(workspace_id)
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, plaintext.encode(), workspace_id.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    async def decrypt(self, workspace_id: str, value: str) -> str:
        if not is_encrypted(value):
            raise SecretError("not an encrypted value (missing the enc:v1: prefix)")
        try:
            raw = base64.b64decode(value[len(PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise SecretError("encrypted value is not valid base64") from None
        if len(raw) < NONCE_BYTES + 16:
            raise SecretError("encrypted value is too short")
        aead = await self._data_key(workspace_id)
        try:
            plain = aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], workspace_id.encode())
        except InvalidTag:
            raise SecretError(
                f"secret of workspace {workspace_id!r} does not decrypt: tampered with or from another workspace"
            ) from None
        return plain.decode()

    async def _data_key(self, workspace_id: str) -> AESGCM:
        aead = self._keys.get(workspace_id)
        if aead is None:
            aead = AESGCM(self._unwrap(workspace_id, await self._load_or_create(workspace_id)))
            self._keys[workspace_id] = aead
        return aead

    async def _load_or_create(self, workspace_id: str) -> bytes:
        candidate = self._wrap(workspace_id, AESGCM.generate_key(bit_length=256))
        async with self._engine.begin() as conn:
            # Only the first writer sets the key; a concurrent loser re-reads the winner's key.
            won = await conn.scalar(
                update(workspaces)
                .where(workspaces.c.id == workspace_id, workspaces.c.wrapped_key.is_(None))
                .values(wrapped_key=candidate)
                .returning(workspaces.c.wrapped_key)
            )
            if won is not None:
                return bytes(won)
            stored = await conn.scalar(select(workspaces.c.wrapped_key).where(workspaces.c.id == workspace_id))
        if stored is None:
            raise SecretError(f"unknown workspace {workspace_id!r}")
        return bytes(stored)

    def _wrap(self, workspace_id: str, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._master.encrypt(nonce, key, _WRAP_AAD + workspace_id.encode())

    def _unwrap(self, workspace_id: str, wrapped: bytes) -> bytes:
        try:
            return self._master.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _WRAP_AAD + workspace_id.encode())
        except InvalidTag:
            raise SecretError(
                f"the data key of workspace {workspace_id!r} does not unwrap: wrong master key "
                "(HEADRACE_MASTER_KEY or data_dir/master.key) or tampered key"
            ) from None
