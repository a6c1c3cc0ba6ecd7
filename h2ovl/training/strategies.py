"""FSDP2 for H2OVL: every ViT block and LLM decoder layer its own `fully_shard` unit, then the root.
Optionally hybrid (HSDP): parameters sharded within groups of `shard_size` processes (a node's GPUs, over
its fast links) and replicated across the groups (gradients all-reduced between nodes, once per step).

Lightning's `ModelParallelStrategy` sets up the process group and the device mesh and calls the
module's `configure_model`, which hands the model to `H2OVLFSDPStrategy.parallelize`. FSDP2 rather than
FSDP1: its parameters stay DTensors with their names and full shapes (weight-decay groups, FLOP counts
and parameter reports read them as on one device), clipping is plain `clip_grad_norm_`, frozen and
trainable parameters may share a unit, and it runs on a CPU mesh over gloo, so the tests exercise the
same path a GPU cluster takes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
from lightning.pytorch.strategies import ModelParallelStrategy
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from h2ovl.errors import SettingError
from h2ovl.model.h2ovl import H2OVL

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class H2OVLFSDPStrategy(ModelParallelStrategy):
    """Fully sharded data parallel over all processes (FSDP2).

    Args:
        param_dtype: the dtype parameters are gathered and computed in ("bfloat16" on GPUs halves the
            all-gather traffic; None: as stored, fp32). Optimizer state and master weights stay fp32.
        reduce_dtype: the dtype gradients are reduce-scattered in.
        reshard_after_forward: free gathered parameters after each unit's forward (ZeRO-3); False keeps
            them until backward (ZeRO-2: less communication, more memory).
        save_distributed_checkpoint: one file per rank instead of a full checkpoint gathered on rank zero
            (default False: a full `last.ckpt`, which `model.init.checkpoint`, `evaluate` and other device counts read).
        reduce_in_accumulation: reduce-scatter gradients after every micro-batch of an accumulation window
            (less memory: gradients stay sharded). Default False: the window's micro-batches accumulate
            unsharded gradients and only its last one reduce-scatters (one reduction per optimizer step, as
            DDP's no-sync does; Lightning's no-sync covers DDP only), at the memory of one unsharded gradient.
        shard_size: processes that shard one replica. None (default): all of them (plain FSDP). An
            integer dividing the world size, or "node" (the processes of one node): hybrid sharding, with
            world size / shard_size replicas whose gradients are all-reduced.
        **kwargs: `ModelParallelStrategy`'s other arguments (`process_group_backend`, `timeout`).
    """

    def __init__(
        self,
        param_dtype: str | None = None,
        reduce_dtype: str | None = "float32",
        reshard_after_forward: bool = True,
        save_distributed_checkpoint: bool = False,
        reduce_in_accumulation: bool = False,
        shard_size: int | Literal["node"] | None = None,
        **kwargs: Any,
    ) -> None:
        # Pure data parallelism: the whole world shards one replica (no tensor parallel dimension).
        super().__init__(tensor_parallel_size=1, save_distributed_checkpoint=save_distributed_checkpoint, **kwargs)
        for name, value in (("param_dtype", param_dtype), ("reduce_dtype", reduce_dtype)):
            if value is not None and value not in _DTYPES:
                raise SettingError(f"strategy {name} must be one of {sorted(_DTYPES)} or null, got {value!r}")
        self.mixed_precision = MixedPrecisionPolicy(
            param_dtype=_DTYPES.get(param_dtype or ""), reduce_dtype=_DTYPES.get(reduce_dtype or "")
        )
        self.reshard_after_forward = reshard_after_forward
        self.reduce_in_accumulation = reduce_in_accumulation
        if not (shard_size is None or shard_size == "node" or (isinstance(shard_size, int) and shard_size >= 1)):
            raise SettingError(f"strategy shard_size must be a positive integer, 'node' or null, got {shard_size!r}")
        self.shard_size = shard_size

    @contextmanager
    def block_backward_sync(self) -> Iterator[None]:
        """Lightning enters this for the micro-batches of an accumulation window but its last: FSDP2 units
        then keep their gradients (unsharded, summed) instead of reduce-scattering them."""
        root = getattr(self.lightning_module, "model", None)
        if self.reduce_in_accumulation or not isinstance(root, FSDPModule):
            yield
            return
        root.set_requires_gradient_sync(False, recurse=True)
        try:
            yield
        finally:
            root.set_requires_gradient_sync(True, recurse=True)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def sharding_mesh(self) -> DeviceMesh:
        """The mesh `fully_shard` takes: 1-D over every process, or 2-D (replicate, shard) for hybrid sharding."""
        if self.shard_size is None:
            return self.device_mesh["data_parallel"]
        shard = self.num_processes if self.shard_size == "node" else self.shard_size
        if self.world_size % shard:
            raise SettingError(
                f"strategy shard_size {self.shard_size!r} ({shard} processes) does not divide the "
                f"{self.world_size} processes of this run"
            )
        mesh = init_device_mesh(
            self.root_device.type, (self.world_size // shard, shard), mesh_dim_names=("replicate", "shard")
        )
        rank_zero_info(f"hybrid sharding: {self.world_size // shard} replicas, each sharded over {shard} processes")
        return mesh

    def parallelize(self, model: H2OVL) -> None:
        """Shard `model` in place: its repeated layers one unit each, the rest (embeddings, projector,
        head, norms) in the root unit."""
        mesh = self.sharding_mesh()
        options = {"mesh": mesh, "mp_policy": self.mixed_precision, "reshard_after_forward": self.reshard_after_forward}
        for layer in model.shard_units():
            fully_shard(layer, **options)
        fully_shard(model, **options)
        # Generation enters the model through `generate`, not `forward`: it must gather the root unit's
        # parameters (embeddings, projector, head) too.
        register_fsdp_forward_method(model, "generate")
