"""``python -m fedbroker``: the ``fedbroker`` command, for when the console script is not on PATH."""

import sys

from .cli.main import main

sys.exit(main())
