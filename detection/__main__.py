"""Entry point of ``python -m detection``: the command line of :mod:`detection.cli`."""

import sys

from detection.cli import main

sys.exit(main())
