"""The `generic` health document's format version: what `resilience_exporter.instrument`
writes and the `generic` preset accepts (docs/application-health.md). A module of its own so
that the helper applications import does not load the mapping (and jmespath) to learn it."""

GENERIC_FORMAT_VERSION = 1
