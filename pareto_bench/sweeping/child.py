"""Entry point of a subprocess trial: ``python -m pareto_bench.sweeping.child BODY [SPEC_FILE]``."""

import sys

from pareto_bench.sweeping.executors import run_child

if __name__ == "__main__":
    sys.exit(run_child(*sys.argv[1:3]))
