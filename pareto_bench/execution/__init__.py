"""Running untrusted code: one sandboxed process per sample (``sandbox`` on the trusted side,
``child`` inside), the value codec between them (``codec``), the code scorer and its plans
(``scoring``), the trusted-side judge (``judge``) and a pool of trusted workers with deadlines
(``pool``)."""
