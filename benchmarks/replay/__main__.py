"""Entry point of ``python -m benchmarks.replay``."""

import sys

from .cli import main

sys.exit(main())
