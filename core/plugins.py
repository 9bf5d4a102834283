"""The plugin manager: built-in plugins from one list, third-party ones from the `headrace` entry points.

A plugin that fails to import or register is recorded in ``load_errors`` (and logged) instead of
stopping the server; ``headrace plugins`` shows it.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import logging
import traceback
from dataclasses import dataclass, field

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

# The one place where core names plugin modules (datasette's default-plugins pattern).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "headrace.plugins.languages.python",
    "headrace.plugins.languages.bash",
    "headrace.plugins.triggers.http",
    "headrace.plugins.languages.typescript",
    "headrace.plugins.languages.go",
    "headrace.plugins.triggers.schedule",
    "headrace.plugins.resource_types",
)

ENTRY_POINT_GROUP = "headrace"


@dataclass
class PluginLoadError:
    name: str
    version: str | None
    error: str
    traceback: str = ""
    package: str | None = None


@dataclass
class PluginInfo:
    name: str
    version: str | None
    hooks: list[str]
    builtin: bool
    error: str | None = None
    # The distribution that provides the plugin (``headrace`` for built-in ones).
    package: str | None = None
    # Ids this plugin offers that another plugin's replace (the one registered last wins).
    overridden: list[str] = field(default_factory=list)


@dataclass
class PluginRegistry:
    pm: pluggy.PluginManager
    load_errors: list[PluginLoadError] = field(default_factory=list)
    versions: dict[str, str | None] = field(default_factory=dict)
    packages: dict[str, str | None] = field(default_factory=dict)

    @property
    def hook(self):
        return self.pm.hook

    def describe(self) -> list[PluginInfo]:
        """Every loaded plugin with the hooks it implements, then every plugin that failed to load."""
        infos = []
        overridden = self.overridden()
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            infos.append(PluginInfo(
                name, self.versions.get(name), hooks, name in DEFAULT_PLUGINS,
                package=self.packages.get(name), overridden=overridden.get(name, []),
            ))
        for err in self.load_errors:
            infos.append(PluginInfo(err.name, err.version, [], err.name in DEFAULT_PLUGINS, err.error,
                                    package=err.package))
        return infos


    def overridden(self) -> dict[str, list[str]]:
        """Per plugin, the ids it offers that a later-registered plugin offers too (and so replaces)."""
        owners: dict[str, list[str]] = {}  # "language python3" -> plugin names, in registration order
        for hook_name, label, key in _ID_HOOKS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                try:
                    items = impl.function() or ()
                except Exception:  # reported elsewhere when the hook is called for real
                    continue
                for item in items:
                    owners.setdefault(f"{label} {key(item)!r}", []).append(impl.plugin_name)
        out: dict[str, list[str]] = {}
        for what, names in owners.items():
            for loser in names[:-1]:
                out.setdefault(loser, []).append(f"{what} is replaced by {names[-1]}")
        return out


# Hooks whose items carry an id that must be unique: (hook, what to call it, how to read the id).
_ID_HOOKS = (
    ("headrace_languages", "language", lambda x: x.id),
    ("headrace_trigger_kinds", "trigger kind", lambda x: x.id),
    ("headrace_resource_types", "resource type", lambda x: x.name),
)


def _dist(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    """(distribution name, version) of the package that declares ``ep``."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def _own_version() -> str | None:
    try:
        return importlib.metadata.version("headrace")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return None


def build_registry(*, load_entry_points: bool = True, extra: tuple[str, ...] = ()) -> PluginRegistry:
    """Create a plugin manager with the default plugins, then entry-point plugins, then ``extra``."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    reg = PluginRegistry(pm)
    own = _own_version()
    for modname in DEFAULT_PLUGINS:
        _register_module(reg, modname, modname, version=own, package="headrace")
    for modname in extra:
        _register_module(reg, modname, modname, version=None, package=None)
    if load_entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            _register_entry_point(reg, ep)
    return reg


def _register_module(
    reg: PluginRegistry, name: str, modname: str, version: str | None, package: str | None
) -> None:
    try:
        module = importlib.import_module(modname)
        reg.pm.register(module, name=name)
        reg.versions[name] = version
        reg.packages[name] = package
    except Exception as exc:  # a broken plugin must not take the server down
        _record(reg, name, version, package, exc)


def _register_entry_point(reg: PluginRegistry, ep: importlib.metadata.EntryPoint) -> None:
    package, version = _dist(ep)
    if reg.pm.has_plugin(ep.name) or reg.pm.is_blocked(ep.name) or _failed(reg, ep.name):
        return  # the same distribution seen twice on sys.path, or a name already taken
    try:
        plugin = ep.load()
        reg.pm.register(plugin, name=ep.name)
        reg.versions[ep.name] = version
        reg.packages[ep.name] = package
    except Exception as exc:  # ImportError, a hookimpl pluggy rejects, anything raised on import
        _record(reg, ep.name, version, package, exc)


def _failed(reg: PluginRegistry, name: str) -> bool:
    return any(err.name == name for err in reg.load_errors)


def _record(
    reg: PluginRegistry, name: str, version: str | None, package: str | None, exc: BaseException
) -> None:
    message = f"{type(exc).__name__}: {exc}"
    log.error("plugin %s failed to load: %s", name, message)
    reg.load_errors.append(PluginLoadError(
        name, version, message, "".join(traceback.format_exception(exc)), package
    ))
