"""Bad input is refused with a 400 that names the problem: syntax (line, column), language, argument."""
from __future__ import annotations


async def create(api, content: str, language: str, path: str = "u/admin/bad"):
    r = await api.post("scripts/create", {"path": path, "content": content, "language": language})
    return r.status, await r.json()


SYNTAX_ERRORS = [  # language, content, line, column
    ("python3", "def main(a: int):\n    return a +\n", 2, 15),
    ("python3", "def main():\n    x = 'unterminated\n    return x\n", 2, 9),
    ("python3", "def main():\nreturn 1\n", 2, 1),
    ("bash", "echo hi\nfoo )\n", 2, 5),
    ("bash", "name=\"$1\"\nif true; then\n  echo x\nfi fi\n", 4, 4),
    ("bash", "echo start\nif true; then\n  echo x\n", 3, None),  # unexpected end of file
]


async def test_script_that_does_not_parse_is_refused_with_line_and_column(api):
    # One server for all cases (each would otherwise start its own).
    for language, content, line, column in SYNTAX_ERRORS:
        status, body = await create(api, content, language)
        assert status == 400, body
        error = body["error"]
        assert error["code"] == "invalid_script"
        assert error["field"] == "content"
        assert (error["line"], error["column"]) == (line, column), (content, error)
        assert error["message"].startswith("invalid Python" if language == "python3" else "invalid Bash")
    # Nothing was saved.
    r = await api.get("scripts/get/p/u/admin/bad")
    assert r.status == 404


async def test_valid_bash_is_accepted(api):
    status = (await api.post("scripts/create", {"path": "u/admin/ok", "language": "bash",
                                                "content": "x=\"$1\"\nif [ -n \"$x\" ]; then echo \"$x\"; fi\n"})).status
    assert status == 201


async def test_unknown_language_names_the_available_ones(api):
    status, body = await create(api, "print('hi')", "cobol")
    assert status == 400
    error = body["error"]
    assert error["field"] == "language"
    assert "cobol" in error["message"]
    for known in ("python3", "bash"):
        assert known in error["message"]
        assert known in error["available"]


ARG_ERRORS = [  # args, field, a word of the message
    ({"a": "seven"}, "a", "integer"),
    ({}, "a", "missing"),
    ({"a": 1, "zz": 2}, "zz", "unknown"),
    ({"a": 1, "xs": [1, "two"]}, "xs.1", "integer"),
    ({"a": 1, "color": "green"}, "color", "red"),
]


async def test_arguments_that_do_not_match_the_schema_name_the_field(api):
    await api.create_script(
        "u/admin/typed",
        "from typing import Literal\n\n"
        "def main(a: int, xs: list[int] = [], color: Literal['red', 'blue'] = 'red'):\n    return a\n",
    )
    for args, field, word in ARG_ERRORS:
        for route in ("jobs/run/p/u/admin/typed", "jobs/run_wait_result/p/u/admin/typed"):
            r = await api.post(route, args)
            body = await r.json()
            assert r.status == 400, (args, body)
            assert body["error"]["code"] == "invalid_args"
            assert body["error"]["field"] == field, (args, body)
            assert word in body["error"]["message"], (args, body)
    r = await api.get("jobs/list")
    assert r.status == 200 and await r.json() == []  # no job was queued


async def test_bash_arguments_are_checked_too(api):
    await api.create_script("u/admin/greet", 'name="$1"\necho "hello $name"\n', language="bash")
    r = await api.post("jobs/run/p/u/admin/greet", {"nom": "x"})
    body = await r.json()
    assert r.status == 400 and body["error"]["field"] in ("name", "nom"), body


async def test_arguments_must_be_a_json_object(api):
    await api.create_script("u/admin/typed2", "def main(a: int = 1):\n    return a\n")
    r = await api.post("jobs/run/p/u/admin/typed2", [1, 2])
    assert r.status == 400
    assert (await r.json())["error"]["code"] == "invalid_args"
