"""`python -m vitrina` runs the command line."""

import sys

from vitrina.cli import main

sys.exit(main())
