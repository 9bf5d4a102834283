"""Read ``main``'s signature from TypeScript source, without a TypeScript toolchain.

``export async function main(a: number, b = "x", c?: "red" | "blue")`` becomes a JSON schema: types,
defaults, optional parameters and string-literal unions as enums. Only the signature is parsed: a small
scanner masks comments and string contents (keeping offsets), finds the parameter list and splits it at
top-level commas.
"""
from __future__ import annotations

import json
import re
from typing import Any

from headrace.core.languages import ScriptError

_MAIN = re.compile(
    r"\bexport\s+(?:default\s+)?(?:async\s+)?function\s*\*?\s*main\s*(?:<[^>(]*>\s*)?\("
    r"|\bexport\s+(?:const|let|var)\s+main\s*(?::[^=]+)?=\s*(?:async\s*)?(?:function\s*)?\("
)
_OPEN = {"(": ")", "[": "]", "{": "}", "<": ">"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_SIMPLE = {
    "string": {"type": "string"},
    "number": {"type": "number"},
    "bigint": {"type": "integer"},
    "boolean": {"type": "boolean"},
    "object": {"type": "object"},
    "Date": {"type": "string", "format": "date-time"},
    "any": {},
    "unknown": {},
}


def mask(source: str) -> str:
    """``source`` with comments blanked and string/template contents replaced by spaces (same offsets)."""
    out = list(source)
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif source.startswith("/*", i):
            j = source.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = [ch if ch == "\n" else " " for ch in source[i:j]]
            i = j
        elif c in "\"'`":
            j = i + 1
            while j < n and source[j] != c:
                if source[j] == "\\":
                    j += 1
                elif c != "`" and source[j] == "\n":
                    break
                j += 1
            for k in range(i + 1, min(j, n)):
                if out[k] != "\n":
                    out[k] = " "
            i = j + 1
        else:
            i += 1
    return "".join(out)


def _position(source: str, offset: int) -> tuple[int, int]:
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _split_top(text: str, masked: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` characters that are outside brackets (found in ``masked``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(masked):
        if ch in "([{" or (ch == "<" and depth >= 0):
            depth += 1
        elif ch in ")]}" or (ch == ">" and (i == 0 or masked[i - 1] != "=")):
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append((text[start:i], masked[start:i]))
            start = i + 1
    parts.append((text[start:], masked[start:]))
    return [p for p in parts if p[1].strip()]


def _find_top(masked: str, chars: str) -> int:
    depth = 0
    for i, ch in enumerate(masked):
        if ch in "([{<":
            depth += 1
        elif ch in ")]}" or (ch == ">" and (i == 0 or masked[i - 1] != "=")):
            depth -= 1
        elif ch in chars and depth == 0:
            if ch == "=" and masked[i + 1: i + 2] in ("=", ">"):
                continue
            return i
    return -1


def type_schema(text: str) -> tuple[dict[str, Any], bool]:
    """(schema, optional) of a TypeScript type; optional when the union includes ``undefined``."""
    text = text.strip()
    parts = [p[0].strip() for p in _split_top(text, mask(text), "|")]
    optional = "undefined" in parts or "void" in parts
    nullable = "null" in parts
    rest = [p for p in parts if p not in ("undefined", "void", "null")]
    if not rest:
        return ({"type": "null"} if nullable else {}), optional
    literals = [_literal(p) for p in rest]
    if all(isinstance(v, str) for v in literals) or all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in literals
    ):
        schema: dict[str, Any] = {"enum": literals + ([None] if nullable else [])}
        return schema, optional
    schemas = [_one_type(p) for p in rest]
    if len(schemas) == 1:
        schema = schemas[0]
    else:
        schema = {"anyOf": schemas}
    if nullable:
        if "type" in schema and isinstance(schema["type"], str):
            schema = {**schema, "type": [schema["type"], "null"]}
        else:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema, optional


_NO_LITERAL = object()


def _literal(text: str) -> Any:
    """The value of a string or number literal type, else a marker."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return _string_literal(text)
    try:
        value = json.loads(text)
    except ValueError:
        return _NO_LITERAL
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else _NO_LITERAL


def _string_literal(text: str) -> str:
    body = text[1:-1]
    if text[0] == "'":
        body = body.replace('\\"', '"').replace('"', '\\"').replace("\\'", "'")
    try:
        return json.loads(f'"{body}"')
    except ValueError:
        return body


def _one_type(text: str) -> dict[str, Any]:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if text.endswith("[]"):
        return {"type": "array", "items": type_schema(text[:-2])[0]}
    m = re.fullmatch(r"(?:Array|ReadonlyArray)\s*<(.*)>", text, re.S)
    if m:
        return {"type": "array", "items": type_schema(m.group(1))[0]}
    if text.startswith("[") and text.endswith("]"):
        return {"type": "array"}
    if text.startswith("{") or re.match(r"(?:Record|Map|Partial|Readonly)\s*<", text):
        return {"type": "object"}
    if text in ("true", "false"):
        return {"const": text == "true"}
    literal = _literal(text)
    if literal is not _NO_LITERAL:
        return {"const": literal}
    return dict(_SIMPLE.get(text, {}))


def default_value(text: str) -> Any:
    """The value of a literal default (JSON-like, single quotes allowed); the marker otherwise."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`" and "${" not in text:
        return _string_literal(text) if text[0] != "`" else text[1:-1]
    if text == "undefined":
        return _NO_LITERAL
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:  # an object or array literal written the JavaScript way
        return json.loads(re.sub(r"([{,]\s*)([A-Za-z_$][\w$]*)\s*:", r'\1"\2":', text.replace("'", '"')))
    except ValueError:
        return _NO_LITERAL


def _type_of_default(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, (int, float)):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    if isinstance(value, dict):
        return {"type": "object"}
    return {}


def parameter_list(source: str) -> tuple[str, str, int]:
    """(text, masked text, offset) of ``main``'s parameter list. Raises ScriptError."""
    masked = mask(source)
    m = None
    for m in _MAIN.finditer(masked):
        pass  # the last definition wins, as at run time
    if m is None:
        raise ScriptError("the script must export a function main(), e.g. `export async function main()`", 1, 1)
    start = m.end()
    stack = ["("]
    i = start
    while i < len(masked):
        ch = masked[i]
        if ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            if not stack or stack[-1] != _CLOSE[ch]:
                line, col = _position(source, i)
                raise ScriptError(f"unbalanced {ch!r} in main()'s parameters", line, col)
            stack.pop()
            if not stack:
                return source[start:i], masked[start:i], start
        i += 1
    line, col = _position(source, start - 1)
    raise ScriptError("main()'s parameter list is never closed", line, col)


_PREPROCESSOR = re.compile(
    r"\bexport\s+(?:async\s+)?function\s*\*?\s*preprocessor\s*[<(]"
    r"|\bexport\s+(?:const|let|var)\s+preprocessor\b"
)


def defines_preprocessor(source: str) -> bool:
    """Whether the script exports ``preprocessor`` (trigger events then reach main() through it)."""
    return _PREPROCESSOR.search(mask(source)) is not None


def main_schema(source: str) -> dict[str, Any]:
    """JSON Schema of ``main``'s parameters; ``order`` lists them as declared."""
    text, masked, offset = parameter_list(source)
    properties: dict[str, Any] = {}
    required: list[str] = []
    order: list[str] = []
    cursor = 0
    for part, part_masked in _split_top(text, masked, ","):
        cursor = text.find(part, cursor)
        stripped = part_masked.strip()
        if stripped.startswith(("{", "[", "...")):
            line, col = _position(source, offset + cursor + (len(part_masked) - len(part_masked.lstrip())))
            raise ScriptError("main()'s parameters must be plain names (no destructuring or rest)", line, col)
        eq = _find_top(part_masked, "=")
        decl, default_text = (part, None) if eq < 0 else (part[:eq], part[eq + 1:])
        decl_masked = part_masked if eq < 0 else part_masked[:eq]
        colon = _find_top(decl_masked, ":")
        name_text = decl if colon < 0 else decl[:colon]
        type_text = None if colon < 0 else decl[colon + 1:]
        name = name_text.strip()
        optional = name.endswith("?")
        name = name.rstrip("?").strip()
        name = re.sub(r"^(?:public|private|protected|readonly)\s+", "", name)
        if not re.fullmatch(r"[A-Za-z_$][\w$]*", name):
            line, col = _position(source, offset + cursor)
            raise ScriptError(f"cannot read the parameter {part.strip()!r} of main()", line, col)
        schema, undefined_ok = type_schema(type_text) if type_text is not None else ({}, False)
        optional = optional or undefined_ok
        if default_text is not None:
            value = default_value(default_text)
            if value is not _NO_LITERAL:
                if type_text is None:
                    schema = _type_of_default(value)
                schema["default"] = value
        elif not optional:
            required.append(name)
        properties[name] = schema
        order.append(name)
        cursor += len(part)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "order": order,
        "additionalProperties": False,
    }
