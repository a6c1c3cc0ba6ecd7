"""h2ovl: train and ablate H2OVL-Mississippi vision-language models (ViT -> pixel shuffle -> MLP -> LLM)."""

__version__ = "0.1.0"
