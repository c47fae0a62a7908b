"""`python -m videoforge ...`: the same CLI, runnable under `torchrun -m videoforge train ...`."""

import os
import sys

from videoforge.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    from videoforge.train.parallelize import exit_worker

    exit_worker(code)
sys.exit(code)
