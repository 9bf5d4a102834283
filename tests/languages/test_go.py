"""Go: `package inner` with `func main(...) (T, error)`, built once per version by the real go toolchain
and cached by content hash."""
from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest
from headrace.core.languages import ScriptError
from headrace.plugins.languages.go import find_go, main_schema

pytestmark = pytest.mark.skipif(
    find_go() is None and not os.environ.get("CI"),  # on CI a missing runtime fails
    reason="go is not installed (.ci/run installs it)",
)

# Go's build cache survives test sessions (a cold one costs several seconds); scripts get a nonce so
# that each test's first run really compiles.
GO_TEST_CACHE = Path(tempfile.gettempdir()) / "headrace-test-cache"


@pytest.fixture
def settings(settings):
    settings.cache_dir = GO_TEST_CACHE
    return settings


def go_language(server):
    from headrace.hub.keys import LANGUAGES

    return server.app[LANGUAGES].resolve("go")


def nonce() -> str:
    return f"// nonce {uuid.uuid4()}\n"


ADD = """\
package inner

import (
	"errors"
	"fmt"
)

type Sum struct {
	Total int    `json:"total"`
	Label string `json:"label"`
}

func main(x, y int, label string, scale *float64) (Sum, error) {
	fmt.Println("adding", x, y)
	if label == "" {
		return Sum{}, errors.New("label must not be empty")
	}
	total := x + y
	if scale != nil {
		total = int(float64(total) * *scale)
	}
	return Sum{Total: total, Label: label}, nil
}
"""


def test_signature_becomes_schema():
    schema = main_schema(ADD)
    assert schema["order"] == ["x", "y", "label", "scale"]
    assert schema["required"] == ["x", "y", "label"]
    assert schema["properties"] == {
        "x": {"type": "integer"}, "y": {"type": "integer"}, "label": {"type": "string"},
        "scale": {"type": ["number", "null"]},
    }


def test_more_types():
    schema = main_schema(
        "package inner\n\nimport \"time\"\n\n"
        "// func main(wrong string) in a comment\n"
        "func main(tags []string, m map[string]int, raw []byte, at time.Time, v any, ok bool) error {\n"
        "\treturn nil\n}\n"
    )
    assert schema["properties"] == {
        "tags": {"type": "array", "items": {"type": "string"}}, "m": {"type": "object"},
        "raw": {"type": "string", "contentEncoding": "base64"},
        "at": {"type": "string", "format": "date-time"}, "v": {}, "ok": {"type": "boolean"},
    }


@pytest.mark.parametrize("source, message, line", [
    ("package main\n\nfunc main() {}\n", "package inner", 1),
    ("package inner\n\nfunc helper() {}\n", "func main", 1),
    ("package inner\n\nfunc main(xs ...int) error {\n\treturn nil\n}\n", "variadic", 3),
])
def test_schema_errors(source, message, line):
    with pytest.raises(ScriptError) as info:
        main_schema(source)
    assert message in info.value.message and info.value.line == line


async def test_built_once_second_run_of_the_same_version_does_not_compile(api, server):
    go = go_language(server)
    await api.create_script("u/admin/add", nonce() + ADD, language="go")
    assert go.builds == 0
    job_id = await api.run_async("u/admin/add", {"x": 2, "y": 3, "label": "sum"})
    first = await api.wait_job(job_id)
    assert first["success"] is True, first
    assert first["result"] == {"total": 5, "label": "sum"}
    assert "compiling the Go script" in first["logs"] and "adding 2 3" in first["logs"]
    assert go.builds == 1

    job_id = await api.run_async("u/admin/add", {"x": 10, "y": 5, "label": "scaled", "scale": 0.5})
    second = await api.wait_job(job_id)
    assert second["result"] == {"total": 7, "label": "scaled"}
    assert "compiling" not in second["logs"] and "adding 10 5" in second["logs"]
    assert go.builds == 1  # the cached binary ran: nothing compiled


async def test_returned_error_fails_the_job(api):
    await api.create_script("u/admin/add", nonce() + ADD, language="go")
    job = await api.wait_job(await api.run_async("u/admin/add", {"x": 1, "y": 1, "label": ""}))
    assert job["success"] is False
    assert job["result"]["error"]["message"] == "label must not be empty"


async def test_panic_fails_the_job_with_its_stack(api):
    script = nonce() + "package inner\n\nfunc main(xs []int) (int, error) {\n\treturn xs[5], nil\n}\n"
    await api.create_script("u/admin/panics", script, language="go")
    job = await api.wait_job(await api.run_async("u/admin/panics", {"xs": [1]}))
    error = job["result"]["error"]
    assert error["name"] == "Panic" and "index out of range" in error["message"]
    assert "inner.go" in error["stack"]


async def test_compile_error_fails_the_job_with_file_and_line(api, server):
    script = nonce() + "package inner\n\nfunc main() (int, error) {\n\treturn undefinedName, nil\n}\n"
    await api.create_script("u/admin/broken", script, language="go")
    job = await api.wait_job(await api.run_async("u/admin/broken"))
    error = job["result"]["error"]
    assert error["name"] == "CompileError"
    assert "inner/inner.go:5" in error["message"] and "undefined: undefinedName" in error["message"]
