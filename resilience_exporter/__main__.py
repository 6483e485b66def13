import sys

from resilience_exporter.cli import main

sys.exit(main())
