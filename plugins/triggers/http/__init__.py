"""Built-in plugin: the `http` trigger kind (HTTP routes under /api/r/<workspace>/...)."""
from headrace.core.hookspecs import hookimpl

from .kind import HttpRouteKind


@hookimpl
def headrace_trigger_kinds():
    return [HttpRouteKind()]
