"""The LightningDataModule: a mixture (meta file, jsonl, LLaVA json, or synthetic by default) streamed
as packed or padded batches, with its position in the data saved in checkpoints.

The tokenizer, preprocessor and tokens-per-tile come from the model as one `Processor`, which `h2ovl fit`
hands over (`bind`), so the preprocessor and pixel shuffle are set once, on the model.
"""

from __future__ import annotations

import glob
import logging
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from torch.utils.data import DataLoader

from h2ovl.argument_groups import as_group
from h2ovl.data.batching import Batching
from h2ovl.data.elastic import rederive
from h2ovl.data.held_out import EvalCollator, EvalSamples
from h2ovl.data.packing import require_packed_rows_isolated
from h2ovl.data.processor import Processor
from h2ovl.data.samples import SampleBuilder
from h2ovl.data.sources import RecordSource, open_sources
from h2ovl.data.stream import SampleStream, StreamTracker, epoch_length
from h2ovl.data.template import ConversationEncoder
from h2ovl.errors import SettingError
from h2ovl.partial_writes import partial_path, remove_stale_partials

log = logging.getLogger(__name__)


@dataclass
class SyntheticData:
    """The embedded default data, made on first use. Its folder is keyed by everything that shapes it
    (`<out>/<key>/`, e.g. `outputs/synthetic/n600-seed0-all-test0.1-side768-v1`), so changing `n`, `tasks`
    or any other field makes new data instead of silently reusing the old, and runs with different
    settings (sweep trials) never share a folder."""

    out: str = "outputs/synthetic"
    n: int = 600
    seed: int = 0
    tasks: list[str] | None = None
    test_fraction: float = 0.1
    max_side: int = 768

    @property
    def folder(self) -> Path:
        from h2ovl.synth import GENERATOR_VERSION

        tasks = "all" if not self.tasks else "+".join(sorted(self.tasks))
        return (
            Path(self.out)
            / f"n{self.n}-seed{self.seed}-{tasks}-test{self.test_fraction:g}-side{self.max_side}-v{GENERATOR_VERSION}"
        )

    def ensure(self) -> dict[str, Path]:
        out = self.folder
        metas = {"train": out / "meta.json", "val": out / "meta_val.json", "test": out / "meta_test.json"}
        if metas["train"].is_file():
            return {split: path for split, path in metas.items() if path.is_file()}
        from h2ovl.synth import write_synthetic

        log.info("writing %d synthetic samples to %s", self.n, out)
        for stale in remove_stale_partials(out.parent, glob.escape(out.name)):
            log.info("removed %s, left by a process killed while writing this data", stale)
        # Written aside and renamed into place, so processes starting together (sweep trials) never read a
        # half-written folder: the first rename wins, the others drop their copy.
        partial = partial_path(out)
        write_synthetic(partial, self.n, self.seed, self.tasks, self.test_fraction, self.max_side)
        try:
            partial.rename(out)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
        return {split: path for split, path in metas.items() if path.is_file()}


class H2OVLDataModule(L.LightningDataModule):
    """The data of a run: a mixture streamed as packed or padded batches, its position saved in checkpoints.

    Args:
        train: a meta file, .jsonl or LLaVA .json; None: the synthetic data (`synthetic`).
        val: the same for validation; None with synthetic data: its validation split.
        test: the same for `h2ovl test` and `h2ovl predict`; None with synthetic data: its test split (never
            the validation split, so a test score is not a validation score).
        synthetic: where the synthetic data (the default when `train` is None) is written and how much.
        batching: padded or packed rows, their sizes, and the global batch of an optimizer step.
        num_workers: data-loader worker processes per device (0: load in the training process).
        steps_per_epoch: batches per Lightning epoch; None: one pass over this rank's share.
        val_limit: validate on the first N records of the validation data (None: all of it).
        test_limit: test and predict on the first N records of the test data (None: all of it).
        seed: seeds the order of the data (a permutation per epoch) and the augmentation.
        on_bad_sample: "skip" (counted, reported per dataset) or "raise" (fatal, naming file and line).
        cache_dir: LitData's local chunk cache, for optimized datasets on object storage.
    """

    def __init__(
        self,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        synthetic: SyntheticData | None = None,
        batching: Batching = Batching(),
        num_workers: int = 0,
        steps_per_epoch: int | None = None,
        val_limit: int | None = None,
        test_limit: int | None = None,
        seed: int = 0,
        on_bad_sample: str = "skip",
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        batching = as_group(Batching, batching)
        for name, value in (("steps_per_epoch", steps_per_epoch), ("val_limit", val_limit), ("test_limit", test_limit)):
            if value is not None and value < 1:
                raise SettingError(f"data.{name} must be at least 1, got {value}")
        if num_workers < 0:
            raise SettingError(f"data.num_workers must be 0 (load in the main process) or more, got {num_workers}")
        if on_bad_sample not in ("skip", "raise"):
            raise SettingError(f"data.on_bad_sample must be 'skip' or 'raise', got {on_bad_sample!r}")
        if batching.pack_tokens is not None:
            require_packed_rows_isolated()
        self.batching = batching
        self.train_path, self.val_path, self.test_path = train, val, test
        self.synthetic = synthetic if isinstance(synthetic, SyntheticData) else SyntheticData(**(synthetic or {}))
        self.num_workers = num_workers
        self.steps_per_epoch = steps_per_epoch
        self.val_limit, self.test_limit = val_limit, test_limit
        self.seed = seed
        self.on_bad_sample = on_bad_sample
        self.cache_dir = cache_dir
        self.tracker = StreamTracker(num_workers, 1)
        self.processor: Processor | None = None
        self._train_stream: SampleStream | None = None
        self._elastic: list[dict[str, Any]] | None = None  # per-rank positions saved by a run of another shape

    # -- wiring -----------------------------------------------------------------------------------------
    def bind(self, processor: Processor) -> H2OVLDataModule:
        """The model's tokenizer, preprocessor and tokens per tile (`h2ovl fit` binds the model's own)."""
        self.processor = processor
        return self

    def accumulation(self, world_size: int, configured: int = 1) -> int:
        """Micro-batches per optimizer step for `global_batch_size`/`global_batch_rows` on `world_size`
        devices (`configured` when neither is set); `h2ovl fit` sets the trainer's from it."""
        size, name = self.batching.global_batch
        if size is None:
            return configured
        return accumulation_steps(size, self.batching.batch_size, world_size, configured, name)

    def _resolve_paths(self) -> dict[str, str | None]:
        """The data of each stage: as configured, else the synthetic data's split of that name."""
        if self.train_path is not None:
            return {"train": self.train_path, "val": self.val_path, "test": self.test_path}
        metas = self.synthetic.ensure()
        if "train" not in metas:
            raise SettingError(
                f"data.synthetic.n={self.synthetic.n} leaves no training sample after the held-out "
                f"test_fraction={self.synthetic.test_fraction} is taken from each task: raise data.synthetic.n "
                f"(new settings write a new folder under {self.synthetic.out})"
            )
        return {
            "train": str(metas["train"]),
            "val": self.val_path or (str(metas["val"]) if "val" in metas else None),
            "test": self.test_path or (str(metas["test"]) if "test" in metas else None),
        }

    def builder(
        self, path: str, seed: int | None = None, split_budget: bool = True, sources: list[RecordSource] | None = None
    ) -> SampleBuilder:
        """Samples of the data at `path` (a mixture, or a benchmark file as distributed), or of `sources`
        already opened from it."""
        if self.processor is None:
            raise RuntimeError("H2OVLDataModule needs the model's processor: bind(module.processor) (h2ovl fit does)")
        if sources is None:
            sources = open_sources(path, self.cache_dir)
        encoder = ConversationEncoder(self.processor.tokenizer, self.batching.sample_tokens)
        return SampleBuilder(
            sources,
            self.processor.preprocessor,
            encoder,
            self.processor.tokens_per_tile,
            self.seed if seed is None else seed,
            split_budget,
        )

    @property
    def pad_token_id(self) -> int:
        return self.processor.pad_token_id

    # -- loaders ----------------------------------------------------------------------------------------
    def train_stream(self, rank: int = 0, world_size: int = 1) -> SampleStream:
        train = self._resolve_paths()["train"]
        builder = self.builder(train)
        if self._elastic is not None:  # a checkpoint of another shape: positions from the common consumed prefix
            epoch_size = epoch_length([len(s) for s in builder.sources], [s.spec.repeat_time for s in builder.sources])
            self.tracker = StreamTracker(self.num_workers, world_size)
            self.tracker.load_state_dict(rederive(self._elastic, rank, world_size, self.num_workers, epoch_size))
            self._elastic = None
        if self.tracker.state.world_size != world_size and not self.tracker.state.workers:
            self.tracker = StreamTracker(self.num_workers, world_size)
        stream = SampleStream(
            builder,
            batch_size=self.batching.batch_size,
            pad_token_id=self.pad_token_id,
            pack_tokens=self.batching.pack_tokens,
            pack_tiles=self.batching.pack_tiles,
            pack_buffer=self.batching.pack_buffer,
            group_by_length=self.batching.group_by_length,
            seed=self.seed,
            rank=rank,
            world_size=world_size,
            on_bad_sample=self.on_bad_sample,
            state=self.tracker.state,  # shared: each new epoch's iterator starts where consumption stopped
            shared=self.tracker.share(self.stream_buffer) if self.num_workers > 0 else None,
        )
        stream.steps_per_epoch = self.steps_per_epoch or self._estimate_steps(stream)
        return stream

    def _estimate_steps(self, stream: SampleStream) -> int:
        """One pass over this rank's share: exact when padding; when packing, estimated from the mean
        length of the epoch's first samples."""
        if not self.batching.pack_tokens:
            return math.ceil(stream.rank_size / self.batching.batch_size)
        lengths = []
        for position in range(min(32, stream.epoch_size)):
            dataset, record, _ = stream._entry(position)
            try:
                lengths.append(stream.builder.build(dataset, record).length)
            except Exception:  # noqa: BLE001 - bad samples are counted by the stream itself
                continue
        mean = sum(lengths) / max(len(lengths), 1) or 1.0
        per_row = max(1.0, self.batching.pack_tokens * 0.95 / mean)
        return max(1, math.ceil(stream.rank_size / (per_row * self.batching.batch_size)))

    @property
    def stream_buffer(self) -> int:
        """The most samples a loader worker holds back (its pending positions)."""
        return (
            self.batching.pack_buffer
            if self.batching.pack_tokens
            else max(self.batching.group_by_length or 0, self.batching.batch_size)
        )

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        self._train_stream = self.train_stream(rank, world)
        # Pinned host memory for the copy to a GPU; workers kept across epochs (they restart from the
        # consumed position in shared memory, so nothing they had prefetched is lost).
        on_gpu = trainer is not None and isinstance(trainer.accelerator, CUDAAccelerator)
        return DataLoader(
            self._train_stream,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=on_gpu,
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader | list:
        val = self._resolve_paths()["val"]
        return [] if val is None else self.eval_dataloader(val, self.val_limit)

    def eval_dataloader(
        self, path: str, limit: int | None = None, split_budget: bool = True, sources: list[RecordSource] | None = None
    ) -> DataLoader:
        """Every record of a meta file, jsonl or benchmark file once, in order (the first `limit`), bad ones
        counted. `split_budget`: the multi-image tile rule (`SampleBuilder`); False for released models."""
        dataset = EvalSamples(
            self.builder(path, split_budget=split_budget, sources=sources), self.on_bad_sample, limit=limit
        )
        return DataLoader(
            dataset,
            batch_size=self.batching.val_rows,
            num_workers=self.num_workers,
            collate_fn=EvalCollator(self.pad_token_id),
        )

    def test_dataloader(self) -> DataLoader | list:
        test = self._resolve_paths()["test"]
        if test is None:
            raise SettingError("h2ovl test/predict need test data: set data.test (a meta file or jsonl)")
        return self.eval_dataloader(test, self.test_limit)

    def predict_dataloader(self) -> DataLoader | list:
        return self.test_dataloader()

    # -- position in the data -------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training and isinstance(batch, dict) and "stream" in batch:
            self.tracker.observe(batch)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Every rank's position (ranks pack and skip differently, so positions differ); called on all
        ranks while a checkpoint is assembled, written by rank zero."""
        state = self.tracker.state_dict()
        world = self.trainer.world_size if self.trainer is not None else 1
        if world > 1 and torch.distributed.is_initialized():
            per_rank: list[Any] = [None] * world
            torch.distributed.all_gather_object(per_rank, state)
            return {"per_rank": per_rank}
        return {"per_rank": [state]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Each rank takes its own saved position; a run of another shape (devices or loader workers)
        re-derives its positions from all of them when its stream is built (`h2ovl.data.elastic`)."""
        per_rank = state_dict.get("per_rank", [state_dict])
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        same_shape = len(per_rank) == world and per_rank[rank]["stream"]["num_workers"] == max(self.num_workers, 1)
        if same_shape:
            self.tracker.load_state_dict(per_rank[rank])
            self._elastic = None
        else:
            self._elastic = per_rank


def accumulation_steps(
    global_batch: int, batch_size: int, world_size: int, configured: int = 1, name: str = "global_batch_size"
) -> int:
    """Micro-batches per optimizer step so that batch_size x devices x steps = the global batch."""
    per_step = batch_size * world_size
    if global_batch % per_step:
        raise SettingError(
            f"data.batching.{name}={global_batch} is not a multiple of data.batching.batch_size={batch_size} x "
            f"{world_size} devices"
        )
    steps = global_batch // per_step
    if configured not in (1, steps):
        raise SettingError(
            f"trainer.accumulate_grad_batches={configured} contradicts data.batching.{name}={global_batch} "
            f"(which needs {steps}); set only one of them"
        )
    return steps
