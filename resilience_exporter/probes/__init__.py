"""One module per probe kind; each registers itself with `resilience_exporter.registry` on import."""
