"""The HTTP API `syncd run` serves (aiohttp): the catalog, sync triggers, event ingest,
metrics, a status page."""
