"""The fast argument check (core/args.py) never accepts what jsonschema refuses, and answers the same."""
from __future__ import annotations

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from headrace.core.args import ArgsError, _fast_check, check_args

TYPES = ["string", "integer", "number", "boolean", "null", "object", "array"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
prop_schemas = st.one_of(
    st.just({}),
    st.sampled_from(TYPES).map(lambda t: {"type": t}),
    st.lists(st.sampled_from(TYPES), min_size=1, max_size=2, unique=True).map(lambda ts: {"type": ts}),
    st.sampled_from(TYPES).map(lambda t: {"type": t, "default": None}),
)
names = st.sampled_from(["a", "b", "c", "user_agent"])
schemas = st.builds(
    lambda props, req, closed: {"type": "object", "properties": props,
                                "required": [r for r in req if r in props], "order": list(props),
                                "additionalProperties": closed},
    st.dictionaries(names, prop_schemas, max_size=4), st.lists(names, max_size=3, unique=True), st.booleans(),
)


@settings(max_examples=400, deadline=None)
@given(schema=schemas, args=st.dictionaries(names, json_values, max_size=4))
def test_fast_path_agrees_with_jsonschema(schema, args):
    fast = _fast_check(schema)
    assert fast is not None
    clean = {k: v for k, v in schema.items() if k != "order"}
    valid = jsonschema.Draft202012Validator(clean).is_valid(args)
    if fast(args):
        assert valid, (schema, args)
    try:
        check_args(f"h{hash(repr(schema))}", schema, args)
        assert valid
    except ArgsError:
        assert not valid


def test_schemas_with_more_than_types_take_the_full_path():
    assert _fast_check({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}}) is None
    assert _fast_check({"type": "object", "properties": {"a": {"enum": [1, 2]}}}) is None
    assert _fast_check({"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}]}}}) is None
    assert _fast_check({"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}) is None


def test_bad_arguments_still_name_the_field():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    for args, field in (({"n": "x"}, "n"), ({}, "n"), ({"n": 1, "zz": 2}, "zz"), ({"n": True}, "n")):
        try:
            check_args("fast-path-fields", schema, args)
        except ArgsError as exc:
            assert exc.field == field, (args, exc.field)
        else:
            raise AssertionError(f"{args} was accepted")
    assert check_args("fast-path-fields", schema, {"n": 3}) == {"n": 3}
