"""A plugin whose import fails, as a plugin with a missing dependency would."""
raise RuntimeError("headrace_broken cannot start: its configuration is missing")
