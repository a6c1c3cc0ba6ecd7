"""The LightningModule: a thin wrapper that gives the plain `H2OVL` a stage's freeze spec, optimizer,
schedule and logging. Loops, precision, strategies and checkpointing are Lightning's."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm

from h2ovl.data.packing import model_inputs
from h2ovl.evaluation.predictions import to_scored
from h2ovl.evaluation.tasks import TaskScorer
from h2ovl.model.h2ovl import H2OVL
from h2ovl.model.projector import NORM_WEIGHT, fit_projector_input
from h2ovl.model.tokenizer import load_tokenizer
from h2ovl.preprocessing import ImagePreprocessor
from h2ovl.training.flops import training_flops
from h2ovl.training.prediction import generate_answers
from h2ovl.training.optim import parameter_groups, warmup_cosine

log = logging.getLogger(__name__)


@dataclass
class Trainable:
    """Which parts a stage trains (SPEC §5); `vision_last_blocks` unfreezes only the last k ViT blocks."""

    vision: bool = False
    projector: bool = True
    llm: bool = False
    vision_last_blocks: int = 0


@dataclass
class ValGeneration:
    """Generation-based validation: greedy answers to the first `samples` validation samples (the same
    ones every time, on any number of ranks), scored by `task` ("auto": each record's `scorer` field) and
    logged as `val/<task>/<metric>` (e.g. `val/cer/cer`, `val/kie/score`) on every `every`-th validation
    run. The `best` checkpoint callback can monitor any of them (`best.monitor`)."""

    samples: int = 0
    task: str = "auto"
    every: int = 1
    max_new_tokens: int | None = None
    """None: the module's `max_new_tokens`."""


#: where the projector sits in this module's state dict
PROJECTOR_PREFIX = "model.projector."


class H2OVLModule(L.LightningModule):
    """Args:
    preset: a model preset ("tiny", "h2ovl-0.8b", ...).
    preprocessor: replaces the preset's preprocessor (the ablation axis); in YAML a `class_path`/`init_args`
        object or the path of a fragment such as `configs/preprocessor/msac.yaml`.
    pixel_shuffle: False keeps every ViT patch as a visual token (downsample_ratio None).
    trainable: the stage's freeze spec.
    lr, weight_decay, betas, part_lr: AdamW; `part_lr` sets a part's own learning rate.
    warmup_ratio, min_lr_ratio: the warmup-cosine schedule over the run's optimizer steps.
    gradient_checkpointing: recompute activations of ViT blocks and LLM layers in backward.
    released: a released model directory (InternVL-chat layout: config.json, safetensors, tokenizer) whose
        architecture, preprocessor, weights and tokenizer replace the preset's (leave `preprocessor` and
        `pixel_shuffle` unset: the weights fix them).
    init_from: a Lightning checkpoint whose *weights* start this stage (not a resume: optimizer,
        schedule, step and data position start fresh).
    init_exclude: parameter-name prefixes not taken from `init_from` (kept freshly initialised). A
        projector from a checkpoint with the other pixel-shuffle setting is carried over, its input
        layers rewritten (`fit_projector_input`); exclude `model.projector` to start it fresh instead.
    max_new_tokens: the generation budget of `predict`.
    val_generation: generation-based validation metrics (off unless `samples` > 0).
    """

    def __init__(
        self,
        preset: str = "tiny",
        preprocessor: ImagePreprocessor | dict[str, Any] | None = None,
        pixel_shuffle: bool = True,
        trainable: Trainable | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        part_lr: dict[str, float] | None = None,
        warmup_ratio: float = 0.03,
        min_lr_ratio: float = 0.0,
        gradient_checkpointing: bool = False,
        released: str | None = None,
        init_from: str | None = None,
        init_exclude: list[str] | None = None,
        max_new_tokens: int = 64,
        val_generation: ValGeneration | None = None,
    ) -> None:
        super().__init__()
        if isinstance(preprocessor, ImagePreprocessor):
            preprocessor = preprocessor.config()  # checkpoints and trackers record the plain form
        self.save_hyperparameters()
        overrides: dict[str, Any] = {}
        if preprocessor is not None:
            overrides["preprocessor"] = preprocessor
        if not pixel_shuffle:
            overrides["downsample_ratio"] = None
        if released:
            self.model, self.tokenizer = H2OVL.from_released(released), load_tokenizer(released)
            if overrides:
                raise ValueError("with `released`, the model's preprocessor and pixel shuffle come from its config.json")
        else:
            self.model, self.tokenizer = H2OVL.from_preset(preset, **overrides)
        self.preprocessor = self.model.build_preprocessor()
        self.trainable = trainable or Trainable()
        self.model.set_trainable(**asdict(self.trainable))
        self.model.set_gradient_checkpointing(vision=gradient_checkpointing, llm=gradient_checkpointing)
        if init_from:
            self._load_weights(init_from, tuple(init_exclude or ()))
        self.val_generation = val_generation or ValGeneration()
        if self.val_generation.every < 1:
            raise ValueError(f"val_generation.every must be at least 1, got {self.val_generation.every}")
        self.val_scorer = TaskScorer(self.val_generation.task) if self.val_generation.samples > 0 else None
        self._validation_runs = 0
        self._step_losses: list[torch.Tensor] = []
        self.flops_per_batch = 0  # read by Lightning's ThroughputMonitor after every batch (MFU)

    def _load_weights(self, path: str, exclude: tuple[str, ...] = ()) -> None:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        kept = {k: v for k, v in state.items() if not k.startswith(exclude)} if exclude else state
        if exclude:
            log.info("init_from %s: %d tensors left at their fresh initialisation (%s)", path, len(state) - len(kept), ", ".join(exclude))
        if PROJECTOR_PREFIX + NORM_WEIGHT in kept:  # absent when excluded
            try:
                kept = fit_projector_input(kept, PROJECTOR_PREFIX, self.model.projector[0].weight.numel())
            except ValueError as error:
                raise ValueError(f"init_from {path}: {error}") from None
        missing, unexpected = self.load_state_dict(kept, strict=False)
        missing = [k for k in missing if not k.startswith(exclude)] if exclude else missing
        if missing or unexpected:
            raise ValueError(f"init_from {path}: missing {missing[:5]}..., unexpected {unexpected[:5]}... keys")

    # -- fit -------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        report = self.model.parameter_report()
        lines = ", ".join(f"{part} {c['trainable']:,} trainable / {c['frozen']:,} frozen" for part, c in report.items())
        log.info("parameters: %s", lines)
        if self.logger is not None:
            self.logger.log_hyperparams({f"params/{part}/{kind}": n for part, c in report.items() for kind, n in c.items()})

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.model(**model_inputs(batch)).loss
        n_samples = len(batch["ids"])
        real = batch["attention_mask"].sum()
        # The logged loss is the optimizer step's: the mean over its accumulated micro-batches, and over
        # ranks (sync_dist), not the last micro-batch on rank zero.
        self._step_losses.append(loss.detach())
        if (batch_idx + 1) % self.trainer.accumulate_grad_batches == 0:
            self.log("train/loss", torch.stack(self._step_losses).mean(), prog_bar=True, batch_size=n_samples, sync_dist=True)
            self._step_losses.clear()
        self.log("train/pad_fraction", 1 - real / batch["attention_mask"].numel(), batch_size=n_samples)
        self.log("train/visual_tokens_per_sample", batch["tiles_per_sample"].sum() * self.model.tokens_per_tile / n_samples, batch_size=n_samples)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=1)
        rows, seq_len = batch["input_ids"].shape
        self.flops_per_batch = training_flops(self.model, int(batch["tiles_per_sample"].sum()), rows, seq_len)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Before clipping, so the logged norm shows what clipping acted on.
        norms = grad_norm(self.model, norm_type=2)
        if norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"], batch_size=1)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if "input_ids" not in batch:  # every sample of the batch was bad (counted in batch["skipped"])
            return
        loss = self.model(**model_inputs(batch)).loss
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["ids"]), sync_dist=True)
        if self._generating():
            rows = [row for row, position in enumerate(batch["positions"]) if position < self.val_generation.samples]
            budget = self.val_generation.max_new_tokens or self.hparams.max_new_tokens
            records = generate_answers(self.model, self.tokenizer, batch, budget, rows)
            self.val_scorer.update(to_scored(record, f"validation sample {record['id']}") for record in records)

    def _generating(self) -> bool:
        if self.val_scorer is None or self.trainer.sanity_checking:
            return False
        return self._validation_runs % self.val_generation.every == 0

    def on_validation_epoch_end(self) -> None:
        if self._generating():
            scores = self.val_scorer.compute()  # summed over ranks already
            self.val_scorer.reset()
            for name, value in scores.items():
                self.log(f"val/{name}", value, batch_size=1, sync_dist=True)  # equal on every rank
        if not self.trainer.sanity_checking:
            self._validation_runs += 1

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if "input_ids" not in batch:
            return
        loss = self.model(**model_inputs(batch)).loss
        self.log("test/loss", loss, batch_size=len(batch["ids"]), sync_dist=True)

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict[str, Any]]:
        """Greedy answers to each sample's first question, with its reference (`h2ovl predict`/`evaluate`)."""
        if "input_ids" not in batch:
            return []
        return generate_answers(self.model, self.tokenizer, batch, self.hparams.max_new_tokens)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        groups = parameter_groups(self.model, hp.lr, hp.weight_decay, hp.part_lr)
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = warmup_cosine(optimizer, total, int(total * hp.warmup_ratio), hp.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
