"""Built-in language plugins. Each module implements the `headrace_languages` hook."""
