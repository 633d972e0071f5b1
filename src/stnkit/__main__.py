"""``python -m stnkit``: the same as the ``stnkit`` command."""

import sys

from .experiments.cli import main

sys.exit(main())
