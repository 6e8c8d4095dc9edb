"""Performance benchmarks behind ``pareto-bench bench ...``; each returns one JSON-able dict."""
