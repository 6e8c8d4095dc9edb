"""``python -m pareto_bench``: the command line, as torchrun and srun launch it."""

from pareto_bench.cli import main

main()
