"""Fuzz the API from its own OpenAPI document with schemathesis, against a running server on a real port.

Bounded: a few examples per operation (positive and negative data), no shrinking, a fixed seed (so a
failure reproduces) and an overall time budget. Each failure is reported with schemathesis' curl line.
"""
from __future__ import annotations

import asyncio
import time
import warnings

import hypothesis
import requests
import schemathesis
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 12, GenerationMode.NEGATIVE: 6}
BUDGET_S = 45.0
REQUEST_TIMEOUT_S = 10.0
# The document's example path; the script exists so that runs and lookups reach real data.
EXAMPLE_SCRIPT = "f/examples/hello"
SCRIPT = "def main(name: str = 'world', n: int = 1):\n    return {'hello': name, 'n': n}\n"


def _destructive_last(op) -> tuple[bool, str]:
    # Archiving the example script or deleting things first would starve the other operations.
    label = op.label
    return ("/archive/" in label or "/delete/" in label or "DELETE" in label, label)


def fuzz(doc: dict, base_url: str, token: str) -> tuple[list[str], int]:
    """(failures, operations fuzzed) of a bounded run over every operation of the document."""
    schema = schemathesis.openapi.from_dict(doc)
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + BUDGET_S
    failures: list[str] = []
    fuzzed = 0
    ops = sorted((r.ok() for r in schema.get_all_operations()), key=_destructive_last)
    for op in ops:
        names = {p.name for p in op.query}
        # A sync run waits for the job: keep the wait short so a delayed job answers 408 quickly.
        fixed = {"wait_timeout": 2} if "wait_timeout" in names else None
        # The token's own workspace: any other one is refused (403) before the handler runs.
        workspace = {"workspace": "main"} if "workspace" in {p.name for p in op.path_parameters} else None
        for mode, count in EXAMPLES.items():
            if time.monotonic() > deadline:
                # A slow machine is not an API bug: say what went unfuzzed, keep what was found.
                warnings.warn(f"fuzz budget of {BUDGET_S} s spent; {op.label} and later operations not fuzzed")
                return failures, fuzzed

            @hypothesis.settings(
                max_examples=count, deadline=None, database=None, derandomize=True,
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            @hypothesis.given(case=op.as_strategy(generation_mode=mode, query=fixed,
                                                          path_parameters=workspace))
            def run(case):
                case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=CHECKS,
                                       timeout=REQUEST_TIMEOUT_S)

            try:
                run()
            except Unsatisfiable:
                pass  # no negative data exists for an operation without constraints
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - every failure is reported, then the next operation runs
                failures.append(f"{op.label} ({mode.value}):\n{exc}")
        fuzzed += 1
    return failures, fuzzed


async def test_fuzz_api_from_its_openapi_document(server, api, admin_token):
    await api.create_script(EXAMPLE_SCRIPT, SCRIPT)
    r = await server.get("/api/openapi.json")
    doc = await r.json()
    base_url = str(server.make_url("")).rstrip("/")
    failures, fuzzed = await asyncio.to_thread(fuzz, doc, base_url, admin_token)
    assert not failures, "\n\n".join(failures)
    assert fuzzed >= 1


# Regressions the fuzzer found, pinned as plain requests.
MALFORMED_MULTIPART = [
    ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="\x1a\xc2\x95"\r\n\r\nx\r\n--b--\r\n'),
    ("multipart/form-data", b"no boundary at all"),
    ("multipart/form-data; boundary=b", b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nunterminated'),
]


async def test_malformed_multipart_is_a_400(api):
    await api.create_script(EXAMPLE_SCRIPT, SCRIPT)
    for route in ("run", "run_wait_result"):
        for ctype, body in MALFORMED_MULTIPART:
            r = await api.client.post(api.url(f"jobs/{route}/p/{EXAMPLE_SCRIPT}"), data=body,
                                      headers={**api.headers, "Content-Type": ctype})
            assert r.status == 400, (route, ctype, r.status, await r.text())
            assert (await r.json())["error"]["code"]


async def test_out_of_range_query_integer_is_a_400(api):
    await api.create_script(EXAMPLE_SCRIPT, SCRIPT)
    r = await api.post(f"jobs/run/p/{EXAMPLE_SCRIPT}?scheduled_in_secs=265997478759758462976", {})
    assert r.status == 400, await r.text()
    assert (await r.json())["error"]["field"] == "scheduled_in_secs"
