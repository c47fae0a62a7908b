"""`python -m videoforge ...`: the same CLI, runnable under `torchrun -m videoforge train ...`."""

import sys

from videoforge.cli import main

sys.exit(main())
