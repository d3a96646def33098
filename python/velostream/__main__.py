"""``python -m velostream``: the command-line interface."""

import sys

from velostream.cli import main

sys.exit(main())
