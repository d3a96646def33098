"""``python -m velostream``: the command-line interface."""

import sys

try:
    from velostream.cli import main

    code = main()
except KeyboardInterrupt:  # Ctrl-C while the package was still being imported
    print("velostream: interrupted", file=sys.stderr)
    code = 130
sys.exit(code)
