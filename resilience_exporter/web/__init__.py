"""The web room: the aiohttp application (`app`), the service it serves (`service`: the
probes' thread, the exposition, reloads), and the exporter-toolkit web config (`webconfig`,
`tls`, `guard`, `openssl`)."""
