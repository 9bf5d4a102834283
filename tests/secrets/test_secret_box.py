"""SecretBox: AES-256-GCM under per-workspace data keys wrapped by the master key, on the real PostgreSQL."""
from __future__ import annotations

import asyncio
import base64
import os
import stat

import pytest
from headrace.core.config import Settings
from headrace.core.db import make_engine
from headrace.core.schema import workspaces
from headrace.core.secrets import SecretBox, SecretError, is_encrypted
from sqlalchemy import insert, select


@pytest.fixture
async def engine(db_url):
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


async def test_round_trip_and_ciphertext_is_not_the_plaintext(engine):
    box = SecretBox(engine, os.urandom(32))
    sealed = await box.encrypt("main", "hunter2-password")
    assert is_encrypted(sealed) and sealed.startswith("enc:v1:")
    assert "hunter2" not in sealed
    assert await box.decrypt("main", sealed) == "hunter2-password"
    # A fresh nonce every time.
    assert await box.encrypt("main", "hunter2-password") != sealed
    assert not is_encrypted("hunter2") and not is_encrypted(None) and not is_encrypted(3)


async def test_data_key_is_stored_wrapped_and_survives_a_new_box(engine):
    master = os.urandom(32)
    sealed = await SecretBox(engine, master).encrypt("main", "s3cret")
    async with engine.connect() as conn:
        wrapped = await conn.scalar(select(workspaces.c.wrapped_key).where(workspaces.c.id == "main"))
    assert wrapped is not None and len(wrapped) == 12 + 32 + 16
    # Another server process (same master key, empty cache) reads it.
    assert await SecretBox(engine, master).decrypt("main", sealed) == "s3cret"


async def test_wrong_master_key_fails_clearly(engine):
    sealed = await SecretBox(engine, os.urandom(32)).encrypt("main", "s3cret")
    with pytest.raises(SecretError, match="wrong master key"):
        await SecretBox(engine, os.urandom(32)).decrypt("main", sealed)


async def test_tampered_ciphertext_and_other_workspace_fail(engine):
    box = SecretBox(engine, os.urandom(32))
    async with engine.begin() as conn:
        await conn.execute(insert(workspaces).values(id="other", name="other"))
    sealed = await box.encrypt("main", "s3cret")
    raw = bytearray(base64.b64decode(sealed[len("enc:v1:"):]))
    raw[-1] ^= 1
    with pytest.raises(SecretError, match="tampered"):
        await box.decrypt("main", "enc:v1:" + base64.b64encode(bytes(raw)).decode())
    with pytest.raises(SecretError):
        await box.decrypt("other", sealed)
    with pytest.raises(SecretError, match="base64"):
        await box.decrypt("main", "enc:v1:@@@")
    with pytest.raises(SecretError, match="prefix"):
        await box.decrypt("main", "plain")
    with pytest.raises(SecretError, match="unknown workspace"):
        await box.encrypt("nope", "x")


async def test_concurrent_first_use_makes_one_key(engine):
    master = os.urandom(32)
    boxes = [SecretBox(engine, master) for _ in range(6)]
    sealed = await asyncio.gather(*(b.encrypt("main", f"v{i}") for i, b in enumerate(boxes)))
    # Every box ended up with the same data key: each decrypts what every other sealed.
    for i, value in enumerate(sealed):
        assert await boxes[(i + 1) % 6].decrypt("main", value) == f"v{i}"


def test_master_key_from_settings_or_file(tmp_path):
    key = os.urandom(32)
    s = Settings(data_dir=tmp_path, master_key=base64.b64encode(key).decode())
    assert SecretBox.load_master_key(s) == key
    assert not (tmp_path / "master.key").exists()

    s = Settings(data_dir=tmp_path / "data")
    created = SecretBox.load_master_key(s)
    path = tmp_path / "data" / "master.key"
    assert len(created) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SecretBox.load_master_key(s) == created  # read back, not regenerated

    with pytest.raises(SecretError, match="HEADRACE_MASTER_KEY.*base64"):
        SecretBox.load_master_key(Settings(data_dir=tmp_path, master_key="not base64!"))
    with pytest.raises(SecretError, match="32 bytes"):
        SecretBox.load_master_key(Settings(data_dir=tmp_path, master_key=base64.b64encode(b"short").decode()))
    path.write_text("garbage")
    with pytest.raises(SecretError, match="master.key"):
        SecretBox.load_master_key(s)


def test_cli_worker_refuses_a_malformed_master_key_clearly(db_url, tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": db_url, "HEADRACE_MASTER_KEY": "bm90LTMyLWJ5dGVz",
           "HEADRACE_DATA_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "headrace.hub.cli", "worker"], env=env, check=False,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "headrace: HEADRACE_MASTER_KEY must be base64 of exactly 32 bytes" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_api_reports_a_secret_that_does_not_decrypt(api, db_url):
    import asyncpg
    from headrace.core.db import plain_dsn

    r = await api.post("variables/create", {"path": "u/admin/s", "value": "v-secret", "is_secret": True})
    assert r.status == 201
    conn = await asyncpg.connect(plain_dsn(db_url))
    try:
        stored = await conn.fetchval("SELECT value FROM variables WHERE path = 'u/admin/s'")
        raw = bytearray(base64.b64decode(stored[len("enc:v1:"):]))
        raw[20] ^= 0xFF
        await conn.execute("UPDATE variables SET value = $1 WHERE path = 'u/admin/s'",
                           "enc:v1:" + base64.b64encode(bytes(raw)).decode())
    finally:
        await conn.close()
    r = await api.get("variables/get_value/u/admin/s")
    err = (await r.json())["error"]
    assert r.status == 500 and err["code"] == "secret_unreadable" and "tampered" in err["message"]
    assert "v-secret" not in await r.text()
