"""One module per probe kind; each registers itself with `exporter.registry` on import."""
