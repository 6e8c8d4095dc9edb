"""``python -m pareto_bench``: the command line, as torchrun and srun launch it.

``record`` writes a failing rank's traceback where torchrun reports it, so the job's summary
names the error, not only the exit code."""

from torch.distributed.elastic.multiprocessing.errors import record

from pareto_bench.cli import main

record(main)()
