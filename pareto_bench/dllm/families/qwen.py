"""Qwen3 and Qwen2 networks, and the block-diffusion checkpoints built on Qwen3."""

from pareto_bench.dllm.families import MODELS, ModelFamily

QWEN3 = ModelFamily("transformers:Qwen3Config", "transformers:Qwen3ForCausalLM")

MODELS.register("qwen3", QWEN3)
MODELS.register("qwen2", ModelFamily("transformers:Qwen2Config", "transformers:Qwen2ForCausalLM"))
# SDAR / TraDo / LightningRL checkpoints are Qwen3 networks with the same parameter names; their
# config.json says "sdar" and points at remote code, which is not needed.
MODELS.register("sdar", QWEN3)
