"""Headrace core: plugin manager, persistence, job queue and worker. Plugins build on these services."""
