"""Grafana dashboards as code: spec (what panels show), content (the dashboards),
generate (JSON through grafana-foundation-sdk), render_previews (PNG previews)."""
