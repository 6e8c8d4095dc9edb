"""Running untrusted code: one sandboxed process per sample (``sandbox`` on the trusted side,
``sandbox_child`` inside), the value codec between them (``codec``), the trusted-side judge of
their outputs (``judge``) and a pool of trusted workers with deadlines (``pool``). The code
benchmarks drive it from ``tasks/code_scoring.py``."""
