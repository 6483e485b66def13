"""Grafana dashboards as code: spec (what panels show), content (the dashboards),
generate (JSON through grafana-foundation-sdk), render_previews (PNG previews)."""

import sys
from pathlib import Path

# The thresholds are read with scripts/gen_alerts.py, the alert rules' own loader; make it
# importable when the generator runs as `python3 -m grafana.generate` from the checkout.
_SCRIPTS = str(Path(__file__).resolve().parent.parent / "scripts")
if _SCRIPTS not in sys.path:
    sys.path.append(_SCRIPTS)
