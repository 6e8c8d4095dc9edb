"""The block-wise diffusion LM: loading models of a registered family (``models``,
``families``), the block-causal attention, the sampler with exact TPF (``sampler``), the
packed block-diffusion likelihood (``likelihood``), and the ``tiny`` model with its pretraining."""
