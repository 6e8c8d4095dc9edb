"""pareto-bench: accuracy-vs-parallelism analysis for block-wise diffusion LLMs."""

__version__ = "0.1.0"
