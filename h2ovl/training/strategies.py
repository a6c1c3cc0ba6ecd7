"""FSDP for H2OVL: shard and (optionally) checkpoint at the ViT blocks and the LLM decoder layers.

The layer classes depend on the preset (timm's ViT block, Llama/Mistral/Qwen2 decoder layers), so they
are read from the model when the strategy is set up rather than written into every config.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.strategies import FSDPStrategy
from torch import nn
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

from h2ovl.model.h2ovl import H2OVL


def layer_classes(model: H2OVL) -> set[type[nn.Module]]:
    """The repeated blocks worth one FSDP unit each: ViT blocks and LLM decoder layers."""
    decoder_layers = model.llm.get_decoder().layers
    return {type(model.vision.blocks[0]), type(decoder_layers[0])}


class H2OVLFSDPStrategy(FSDPStrategy):
    """Lightning's `FSDPStrategy` with H2OVL's wrap policy as the default.

    Args:
        activation_checkpointing: recompute the activations of every wrapped layer in backward (use this
            instead of the module's `gradient_checkpointing` under FSDP).
        **kwargs: `FSDPStrategy`'s arguments (`sharding_strategy`, `state_dict_type`, `cpu_offload`, ...);
            an explicit `auto_wrap_policy` wins over the default.
    """

    def __init__(self, activation_checkpointing: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoint_layers = activation_checkpointing

    def setup(self, trainer: Any) -> None:
        layers = layer_classes(trainer.lightning_module.model)
        self.kwargs.setdefault("auto_wrap_policy", ModuleWrapPolicy(layers))
        if self.checkpoint_layers:
            self._activation_checkpointing_kwargs = {"auto_wrap_policy": ModuleWrapPolicy(layers)}
        super().setup(trainer)
