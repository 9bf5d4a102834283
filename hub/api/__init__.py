"""API route modules, one per area. Each exposes ``routes`` (an aiohttp RouteTableDef)."""
