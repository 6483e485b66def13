"""Grafana dashboards as code: spec (what panels show), boards (the dashboards, one module
each), generate (JSON through grafana-foundation-sdk), render_previews (PNG previews)."""
