"""TypeScript on bun: main()'s signature as a JSON schema, real jobs run by bun's platform binary, npm
packages installed once into the cache."""
from __future__ import annotations

import os

import pytest
from headrace.core.languages import ScriptError
from headrace.plugins.languages import deps_bun
from headrace.plugins.languages.ts_signature import main_schema
from headrace.plugins.languages.typescript import find_bun

pytestmark = pytest.mark.skipif(
    find_bun() is None and not os.environ.get("CI"),  # on CI a missing runtime fails
    reason="bun is not installed (.ci/run installs it)",
)


@pytest.fixture
def settings(settings, tmp_path):
    settings.cache_dir = tmp_path / "cache"
    return settings


# -- schema -----------------------------------------------------------------------------------------

def test_signature_becomes_schema_with_types_defaults_optional_and_enums():
    schema = main_schema(
        "// export function main(ignored: string) in a comment\n"
        "const s = 'export function main(nope)';\n"
        "export async function main(a: number, b = \"x\", c?: \"red\" | \"blue\",\n"
        "  tags: string[] = ['p'], when: Date | undefined, opts: Record<string, number> = {},\n"
        "  cb: { f: (x: number) => void }, n: number | null = null, on = false) {\n"
        "  return a;\n"
        "}\n"
    )
    props = schema["properties"]
    assert schema["order"] == ["a", "b", "c", "tags", "when", "opts", "cb", "n", "on"]
    assert schema["required"] == ["a", "cb"]
    assert props["a"] == {"type": "number"}
    assert props["b"] == {"type": "string", "default": "x"}
    assert props["c"] == {"enum": ["red", "blue"]}
    assert props["tags"] == {"type": "array", "items": {"type": "string"}, "default": ["p"]}
    assert props["when"] == {"type": "string", "format": "date-time"}
    assert props["opts"] == {"type": "object", "default": {}}
    assert props["cb"] == {"type": "object"}
    assert props["n"] == {"type": ["number", "null"], "default": None}
    assert props["on"] == {"type": "boolean", "default": False}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("source, message, line", [
    ("function helper() {}\n", "must export a function main()", 1),
    ("export function main(a: number {\n  return a\n}\n", "never closed", 1),
    ("export function main(a: number]) {}\n", "unbalanced", 1),
    ("\nexport function main({ a, b }: Args) {}\n", "plain names", 2),
])
def test_signature_errors_name_the_problem(source, message, line):
    with pytest.raises(ScriptError) as info:
        main_schema(source)
    assert message in info.value.message and info.value.line == line


def test_npm_packages_are_read_from_imports():
    source = (
        'import isNumber from "is-number";\n'
        "import { a } from '@scope/pkg/sub/path';\n"
        'import type { T } from "types-only";\n'
        'import * as fs from "node:fs";\n'
        'import path from "path";\n'
        'import local from "./local.ts";\n'
        'const lazy = await import("lazy-pkg");\n'
        '// import commented from "commented-out";\n'
        'export { x } from "re-export";\n'
    )
    assert deps_bun.packages(source) == ["is-number", "@scope/pkg", "types-only", "lazy-pkg", "re-export"]


# -- jobs -------------------------------------------------------------------------------------------

GREET = """\
export async function main(a: number, b = "x", c?: "red" | "blue") {
  console.log("log line", a);
  console.error("err line");
  await new Promise((resolve) => setTimeout(resolve, 1));
  return { a, b, c: c ?? null, order: [a, b, c] };
}
"""


async def test_args_by_name_in_signature_order_and_awaited_result(api):
    await api.create_script("u/admin/greet", GREET, language="typescript")
    r = await api.get("scripts/get/p/u/admin/greet")
    body = await r.json()
    assert body["language"] == "bun"
    assert body["schema"]["properties"]["c"] == {"enum": ["red", "blue"]}
    assert body["lock"] is None
    status, result = await api.run_wait("u/admin/greet", {"c": "blue", "a": 5})
    assert status == 200, result
    assert result == {"a": 5, "b": "x", "c": "blue", "order": [5, "x", "blue"]}


async def test_enum_is_enforced_by_the_schema(api):
    await api.create_script("u/admin/greet", GREET, language="bun")
    status, body = await api.run_wait("u/admin/greet", {"a": 1, "c": "green"})
    assert status == 400
    assert "c" in str(body["error"])


async def test_console_output_streams_into_the_job_log(api):
    await api.create_script("u/admin/greet", GREET, language="bun")
    job_id = await api.run_async("u/admin/greet", {"a": 7})
    job = await api.wait_job(job_id)
    assert job["success"] is True
    assert "log line 7" in job["logs"] and "err line" in job["logs"]


async def test_thrown_error_fails_the_job_with_message_and_stack(api):
    script = "function inner(n: number) {\n  throw new RangeError(`bad n: ${n}`);\n}\n" \
             "export async function main(n: number) {\n  return inner(n);\n}\n"
    await api.create_script("u/admin/throws", script, language="bun")
    job_id = await api.run_async("u/admin/throws", {"n": 3})
    job = await api.wait_job(job_id)
    assert job["success"] is False
    error = job["result"]["error"]
    assert error["name"] == "RangeError" and error["message"] == "bad n: 3"
    assert "main.ts:2" in error["stack"] and "inner" in error["stack"]
    assert "bun_wrapper" not in error["stack"]


async def test_script_bun_cannot_parse_is_refused_with_line_and_column(api):
    script = "export async function main(a: number) {\n  const x = ;\n  return a;\n}\n"
    r = await api.post("scripts/create", {"path": "u/admin/bad", "content": script, "language": "bun"})
    assert r.status == 400
    error = (await r.json())["error"]
    assert error["field"] == "content" and (error["line"], error["column"]) == (2, 13)


async def test_npm_package_is_locked_at_save_and_installed_once(api):
    script = 'import isNumber from "is-number";\n\nexport function main(x: string) {\n  return isNumber(x);\n}\n'
    resolved = deps_bun.stats["resolved"]
    await api.create_script("u/admin/isnum", script, language="bun")
    assert deps_bun.stats["resolved"] == resolved + 1
    r = await api.get("scripts/get/p/u/admin/isnum")
    assert '"is-number@' in (await r.json())["lock"]

    installed = deps_bun.stats["installed"]
    assert await api.run_wait("u/admin/isnum", {"x": "12"}) == (200, True)
    assert deps_bun.stats["installed"] == installed + 1
    assert await api.run_wait("u/admin/isnum", {"x": "twelve"}) == (200, False)
    assert deps_bun.stats["installed"] == installed + 1  # the second run installed nothing
