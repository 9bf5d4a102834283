"""Scripts by path with immutable versions identified by hash (Windmill's routes and payloads)."""
from __future__ import annotations

import re

V1 = "def main(name: str = 'world'):\n    return f'v1 hello {name}'\n"
V2 = "def main(name: str, excited: bool = False):\n    return f'v2 hello {name}' + ('!' if excited else '')\n"


async def _save(api, path, content, language="python3", **extra):
    r = await api.post("scripts/create", {"path": path, "content": content, "language": language, **extra})
    return r.status, await r.text()


async def test_create_and_get_by_path_and_hash(api):
    status, h = await _save(api, "f/team/greet", V1, summary="Greets", description="Says hello")
    assert status == 201 and re.fullmatch(r"[0-9a-f]{16}", h)
    r = await api.get("scripts/get/p/f/team/greet")
    body = await r.json()
    assert r.status == 200
    assert {k: body[k] for k in ("hash", "path", "language", "content", "summary", "description",
                                 "parent_hash", "archived")} == {
        "hash": h, "path": "f/team/greet", "language": "python3", "content": V1, "summary": "Greets",
        "description": "Says hello", "parent_hash": None, "archived": False}
    # main's signature became the schema.
    assert body["schema"]["properties"]["name"]["default"] == "world"
    r = await api.get(f"scripts/get/h/{h}")
    assert r.status == 200 and (await r.json())["content"] == V1


async def test_language_aliases_store_windmill_ids(api):
    status, _ = await _save(api, "u/admin/aliased", V1, language="python")
    assert status == 201
    assert (await (await api.get("scripts/get/p/u/admin/aliased")).json())["language"] == "python3"


async def test_new_save_is_a_new_version_and_old_hash_keeps_its_content(api):
    _, h1 = await _save(api, "u/admin/greet", V1)
    assert await api.run_wait("u/admin/greet", {"name": "ada"}) == (200, "v1 hello ada")
    _, h2 = await _save(api, "u/admin/greet", V2)
    assert h2 != h1
    # The path runs the latest version...
    assert await api.run_wait("u/admin/greet", {"name": "ada", "excited": True}) == (200, "v2 hello ada!")
    # ...the old hash still runs its old content, with its old schema.
    r = await api.post(f"jobs/run_wait_result/h/{h1}", {})
    assert (r.status, await r.json()) == (200, "v1 hello world")
    r = await api.post(f"jobs/run/h/{h1}", {"name": "bob"})
    assert r.status == 201
    job = await api.wait_job(await r.text())
    assert (job["success"], job["result"], job["script_hash"]) == (True, "v1 hello bob", h1)
    # History, newest first, chained by parent_hash.
    r = await api.get("scripts/history/p/u/admin/greet")
    history = await r.json()
    assert [v["hash"] for v in history] == [h2, h1]
    assert [v["parent_hash"] for v in history] == [h1, None]
    r = await api.get(f"scripts/get/h/{h2}")
    assert (await r.json())["parent_hash"] == h1


async def test_saving_the_same_content_makes_no_new_version(api):
    _, h1 = await _save(api, "u/admin/same", V1)
    status, h2 = await _save(api, "u/admin/same", V1)
    assert status == 201 and h2 == h1
    assert len(await (await api.get("scripts/history/p/u/admin/same")).json()) == 1


async def test_parent_hash_guards_against_lost_updates(api):
    _, h1 = await _save(api, "u/admin/edit", V1)
    _, h2 = await _save(api, "u/admin/edit", V2, parent_hash=h1)
    r = await api.post("scripts/create", {"path": "u/admin/edit", "content": V1 + "\n", "language": "python3",
                                          "parent_hash": h1})
    assert r.status == 409
    error = (await r.json())["error"]
    assert error["code"] == "conflict" and error["latest"] == h2


async def test_list_shows_latest_versions_without_content(api):
    await _save(api, "u/admin/a", V1)
    _, hb = await _save(api, "u/admin/b", V1)
    _, hb2 = await _save(api, "u/admin/b", V2)
    r = await api.get("scripts/list")
    listed = await r.json()
    assert [(s["path"], s["hash"]) for s in listed][1] == ("u/admin/b", hb2)
    assert [s["path"] for s in listed] == ["u/admin/a", "u/admin/b"]
    assert all("content" not in s for s in listed)


async def test_archive(api):
    _, h = await _save(api, "u/admin/old", V1)
    r = await api.post("scripts/archive/p/u/admin/old")
    assert r.status == 200
    assert (await api.get("scripts/get/p/u/admin/old")).status == 404
    assert "u/admin/old" not in [s["path"] for s in await (await api.get("scripts/list")).json()]
    r = await api.post("jobs/run/p/u/admin/old", {})
    assert r.status == 404
    assert (await api.post("scripts/archive/p/u/admin/old")).status == 200
    assert (await api.post("scripts/archive/p/u/admin/never")).status == 404


async def test_bash_script(api):
    content = 'name="$1"\ngreeting="${2:-hi}"\necho "$greeting $name"\n'
    status, _ = await _save(api, "u/admin/sh", content, language="bash")
    assert status == 201
    assert await api.run_wait("u/admin/sh", {"name": "ada"}) == (200, "hi ada")
