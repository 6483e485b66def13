"""The metrics room: declared families (`families`) written by the exporter's own encoder
(`encoding`), the snapshots probes publish (`snapshots`) joined into the exposition
(`exposition`), the exporter's own process (`process`), and the schemas shared by the
exporter's and applications' pools and breakers (`pool_schema`, `breaker_schema`, with the
health-document mapping that fills them: `health_mapping`, `health_presets`)."""
