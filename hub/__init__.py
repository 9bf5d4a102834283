"""The Headrace server: the aiohttp app, its API routes and the services it runs."""
