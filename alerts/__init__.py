"""The alert rules: thresholds (alerts/thresholds.yml, read by the rules and the dashboards)
and generate (alerts/*.rules.yml from alerts/templates/, `make alerts`)."""
