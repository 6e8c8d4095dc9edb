"""Llama networks (Fast-dLLM v2 and other block-diffusion fine-tunes of Llama checkpoints)."""

from pareto_bench.dllm.families import MODELS, ModelFamily

MODELS.register("llama", ModelFamily("transformers:LlamaConfig", "transformers:LlamaForCausalLM"))
