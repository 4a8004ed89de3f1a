"""`python -m server`: the same as the `respd` command."""

import sys

from server.cli import main

sys.exit(main())
