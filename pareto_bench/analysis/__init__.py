"""Pareto analysis of evaluation records (``frontier``: non-dominated sets, hypervolume, AUP,
attainment, bootstrap comparisons) and the reports built from them (``report``)."""
