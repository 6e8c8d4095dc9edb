"""Entry point of a subprocess trial: ``python -m pareto_bench.sweep.child BODY [SPEC_FILE]``."""

import sys

from pareto_bench.sweep.executors.child_process import run_child

if __name__ == "__main__":
    sys.exit(run_child(*sys.argv[1:3]))
