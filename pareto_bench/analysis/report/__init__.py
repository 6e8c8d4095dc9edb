"""Reports: plots and a multi-page PDF rendered from a sweep's recorded data alone."""
