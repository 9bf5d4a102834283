"""Built-in plugins. Each is registered from DEFAULT_PLUGINS in headrace.core.plugins, like a third-party one."""
