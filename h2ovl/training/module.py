"""The LightningModule: a thin wrapper that gives the plain `H2OVL` a stage's freeze spec, optimizer,
schedule and logging. Loops, precision, strategies and checkpointing are Lightning's."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric

from h2ovl.argument_groups import as_group
from h2ovl.data.packing import model_inputs
from h2ovl.data.processor import Processor
from h2ovl.errors import CheckpointError, SettingError, TrainingDiverged
from h2ovl.model.factory import build_model
from h2ovl.model.h2ovl import Attention
from h2ovl.model.projector import NORM_WEIGHT, fit_projector_input
from h2ovl.preprocessing import ImagePreprocessor
from h2ovl.training.flops import training_flops
from h2ovl.training.generation import generate_answers
from h2ovl.training.loss import GlobalLossNormalizer, weighted_loss
from h2ovl.training.optim import parameter_groups, warmup_cosine
from h2ovl.training.settings import Initialization, Optimization, Trainable, ValGeneration
from h2ovl.training.strategies import H2OVLFSDPStrategy
from h2ovl.training.weights import load_checkpoint_weights

log = logging.getLogger(__name__)
#: the count of optimizer steps skipped for a non-finite loss, in a checkpoint
SKIPPED_KEY = "h2ovl_skipped_nonfinite"


#: where the projector sits in this module's state dict
PROJECTOR_PREFIX = "model.projector."


class H2OVLModule(L.LightningModule):
    """The LightningModule: an H2OVL model, its freeze spec, optimizer, schedule, loss and generation-based validation.

    Args:
        preset: a model preset ("tiny", "h2ovl-0.8b", ...): the architecture.
        preprocessor: replaces the preset's preprocessor (the ablation axis): a `class_path`/`init_args`
            object, a short name (`fixed`, `dynamic`, `msac`) or the path of a fragment such as
            `configs/preprocessor/msac.yaml`.
        pixel_shuffle: False keeps every ViT patch as a visual token (downsample_ratio None).
        init: where the weights and tokenizer come from (released model, pretrained parts, a checkpoint).
        trainable: the stage's freeze spec.
        optim: AdamW, its schedule, and how a step's loss is formed and checked.
        gradient_checkpointing: recompute activations of ViT blocks and LLM layers in backward (also under
            FSDP).
        attention: the LLM's attention kernel. Packed rows (`data.batching.pack_tokens`) stay exact under each;
            "flex_attention" never materialises their block-diagonal mask (GPU training: torch has no CPU
            backward for it), "flash_attention_2" uses its varlen path where the package is installed.
        val_generation: generation-based validation metrics (off unless `samples` > 0).
        max_new_tokens: the generation budget of `predict`.
    """

    def __init__(
        self,
        preset: str = "tiny",
        preprocessor: ImagePreprocessor | dict[str, Any] | str | None = None,
        pixel_shuffle: bool = True,
        init: Initialization = Initialization(),
        trainable: Trainable = Trainable(),
        optim: Optimization = Optimization(),
        gradient_checkpointing: bool = False,
        attention: Attention = "sdpa",
        val_generation: ValGeneration = ValGeneration(),
        max_new_tokens: int = 64,
    ) -> None:
        super().__init__()
        if isinstance(preprocessor, ImagePreprocessor):
            preprocessor = preprocessor.config()  # checkpoints and trackers record the plain form
        self.save_hyperparameters()
        init, trainable = as_group(Initialization, init), as_group(Trainable, trainable)
        optim, val_generation = as_group(Optimization, optim), as_group(ValGeneration, val_generation)
        self.init, self.trainable, self.optim, self.val_generation = init, trainable, optim, val_generation
        built = build_model(
            preset,
            vision_weights=init.vision_weights,
            llm=init.llm,
            tokenizer=init.tokenizer,
            preprocessor=preprocessor,
            pixel_shuffle=pixel_shuffle,
            released=init.released,
            attention=attention,
        )
        self.model, self.tokenizer, self.preprocessor = built.model, built.tokenizer, built.preprocessor
        self.processor = Processor(self.tokenizer, self.preprocessor, self.model.tokens_per_tile)
        self.model.set_trainable(**asdict(trainable))
        self.model.set_gradient_checkpointing(vision=gradient_checkpointing, llm=gradient_checkpointing)
        if init.checkpoint:
            self._load_weights(init.checkpoint, tuple(init.exclude))
        generated = max(self.val_generation.samples, self.val_generation.final_samples or 0)
        self.val_scorer = None
        if generated > 0:
            # The scorers (rapidfuzz, zss) load only where validation answers: a bare training image need not have them.
            from h2ovl.scoring.tasks import TaskScorer

            self.val_scorer = TaskScorer(self.val_generation.task)
        self._validation_runs = 0
        self._step_loss = GlobalLossNormalizer()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()  # weighted by each batch's token weight
        self.flops_per_batch = 0  # read by Lightning's ThroughputMonitor after every batch (MFU)
        self._window_ids: list[str] = []  # the samples of the optimizer step being accumulated
        self.skipped_nonfinite = 0

    def _load_weights(self, path: str, exclude: tuple[str, ...] = ()) -> None:
        state = load_checkpoint_weights(path)
        kept = {k: v for k, v in state.items() if not k.startswith(exclude)} if exclude else state
        if exclude:
            log.info(
                "model.init.checkpoint %s: %d tensors left at their fresh initialisation (%s)",
                path,
                len(state) - len(kept),
                ", ".join(exclude),
            )
        if PROJECTOR_PREFIX + NORM_WEIGHT in kept:  # absent when excluded
            try:
                kept = fit_projector_input(kept, PROJECTOR_PREFIX, self.model.projector[0].weight.numel())
            except ValueError as error:
                raise CheckpointError(f"model.init.checkpoint {path}: {error}") from None
        missing, unexpected = self.load_state_dict(kept, strict=False)
        missing = [k for k in missing if not k.startswith(exclude)] if exclude else missing
        if missing or unexpected:
            raise CheckpointError(
                f"model.init.checkpoint {path}: missing {missing[:5]}..., unexpected {unexpected[:5]}... keys"
            )

    # -- fit -------------------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.hparams.attention == "flex_attention" and self.device.type == "cpu":
            raise SettingError(
                f"model.attention: flex_attention has no backward on CPU (torch {torch.__version__}): train on CPU "
                "with sdpa, which keeps packed rows exact too"
            )
        report = self.model.parameter_report()
        lines = ", ".join(f"{part} {c['trainable']:,} trainable / {c['frozen']:,} frozen" for part, c in report.items())
        log.info("parameters: %s", lines)
        if self.logger is not None:
            self.logger.log_hyperparams(
                {f"params/{part}/{kind}": n for part, c in report.items() for kind, n in c.items()}
            )

    def configure_model(self) -> None:
        """Shard the model when the strategy is FSDP (called by Lightning once processes exist)."""
        if self._trainer is None:  # `load_from_checkpoint` calls this hook too
            return
        strategy = self._trainer.strategy
        if isinstance(strategy, H2OVLFSDPStrategy) and not getattr(self, "_sharded", False):
            strategy.parallelize(self.model)
            self._sharded = True

    def _weighted_loss(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(**{**model_inputs(batch), "labels": None}).logits
        return weighted_loss(logits, batch, self.optim.loss_reduction)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss_sum, weight = self._weighted_loss(batch)
        self._step_loss.add(loss_sum, weight)
        self._window_ids += batch["ids"]
        n_samples = len(batch["ids"])
        real = batch["attention_mask"].sum()
        self.log("train/pad_fraction", 1 - real / batch["attention_mask"].numel(), batch_size=n_samples)
        self.log(
            "train/visual_tokens_per_sample",
            batch["tiles_per_sample"].sum() * self.model.tokens_per_tile / n_samples,
            batch_size=n_samples,
        )
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=1)
        rows, seq_len = batch["input_ids"].shape
        self.flops_per_batch = training_flops(self.model, batch["pixel_values"].shape[0], rows, seq_len)
        return loss_sum * GlobalLossNormalizer.backward_scale(
            self.trainer.world_size, self.trainer.accumulate_grad_batches
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Accumulation is complete: the gradients become those of the global batch's weighted mean,
        # and the logged loss is that mean (over every micro-batch and rank, not rank zero's last one).
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        loss = self._step_loss.finish_step(trainable, lambda t: self.trainer.strategy.reduce(t, reduce_op="sum"))
        self.log("train/loss", loss, prog_bar=True, batch_size=1, rank_zero_only=True)
        samples, self._window_ids = self._window_ids, []
        # One host sync per optimizer step: the global loss is the same on every rank, so all decide alike.
        finite = bool(torch.isfinite(loss))
        if not finite:
            self._nonfinite_step(float(loss), samples, trainable)
        if self.optim.nonfinite_loss == "skip":  # the running count, a point every step
            self.log("train/skipped_nonfinite", float(self.skipped_nonfinite), batch_size=1, rank_zero_only=True)
        if not finite:
            return
        # Before clipping, so the logged norm shows what clipping acted on. `get_total_norm` reduces
        # sharded (DTensor) gradients across ranks.
        grads = [p.grad for p in trainable if p.grad is not None]
        if grads:
            norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
            self.log(
                "train/grad_norm",
                norm.full_tensor() if hasattr(norm, "full_tensor") else norm,
                batch_size=1,
                rank_zero_only=True,
            )

    def _nonfinite_step(self, loss: float, samples: list[str], trainable: list[torch.nn.Parameter]) -> None:
        step = self.trainer.global_step + 1  # the optimizer step this is (1-based, as progress lines count)
        shown = ", ".join(samples[:8]) + (f" and {len(samples) - 8} more" if len(samples) > 8 else "")
        if self.optim.nonfinite_loss == "stop":
            raise TrainingDiverged(
                f"the loss of optimizer step {step} is {loss} (samples {shown}); nothing was updated and the last "
                "checkpoint before it is kept: resume with --ckpt_path last after lowering model.optim.lr, raising "
                "trainer.gradient_clip_val's strictness, or set model.optim.nonfinite_loss: skip to step over such batches"
            )
        for parameter in trainable:  # an optimizer skips parameters without a gradient: no update, no moments
            parameter.grad = None
        self.skipped_nonfinite += 1
        log.warning("optimizer step %d skipped: the loss is %s (samples %s)", step, loss, shown)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[SKIPPED_KEY] = self.skipped_nonfinite

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.skipped_nonfinite = checkpoint.get(SKIPPED_KEY, 0)  # the count runs on across a resume

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        if "input_ids" not in batch:  # every sample of the batch was bad (counted in batch["skipped"])
            return
        loss_sum, weight = self._weighted_loss(batch)
        self.val_loss.update(loss_sum / weight, weight)
        self.log(f"{self._val_prefix}/loss", self.val_loss, prog_bar=True)
        if self._generating():
            samples = self._generated_samples()
            rows = [row for row, position in enumerate(batch["positions"]) if position < samples]
            budget = self.val_generation.max_new_tokens or self.hparams.max_new_tokens
            # Under FSDP every forward is collective: every rank generates (a rank without a chosen
            # sample answers its first one and drops it), for as many steps as the slowest rank.
            sharded = isinstance(self.trainer.strategy, H2OVLFSDPStrategy)
            if rows or sharded:
                records = generate_answers(self.model, self.tokenizer, batch, budget, rows or [0], synced=sharded)
                if rows:
                    from h2ovl.scoring.prediction_files import to_scored

                    self.val_scorer.update(to_scored(record, f"validation sample {record['id']}") for record in records)

    @property
    def _val_prefix(self) -> str:
        """`val/` during fit; `h2ovl validate` of a checkpoint logs under `validate/`, so its point never
        joins (or lands beside) the validation curves of the training run it continues."""
        return "val" if self.trainer.state.fn == "fit" else "validate"

    def _generated_samples(self) -> int:
        """`val_generation.samples`, or `final_samples` at the end of a fit and outside one."""
        final, trainer = self.val_generation.final_samples, self.trainer
        at_end = trainer.state.fn != "fit" or 0 < trainer.max_steps <= trainer.global_step
        return final if final is not None and at_end else self.val_generation.samples

    def _generating(self) -> bool:
        if self.val_scorer is None or self.trainer.sanity_checking:
            return False
        return self._validation_runs % self.val_generation.every == 0

    def on_validation_epoch_end(self) -> None:
        if self._generating():
            scores = self.val_scorer.compute()  # summed over ranks already
            self.val_scorer.reset()
            for name, value in scores.items():
                self.log(f"{self._val_prefix}/{name}", value, batch_size=1, sync_dist=True)  # equal on every rank
        if not self.trainer.sanity_checking:
            self._validation_runs += 1

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if "input_ids" not in batch:
            return
        loss_sum, weight = self._weighted_loss(batch)
        self.test_loss.update(loss_sum / weight, weight)
        self.log("test/loss", self.test_loss)

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict[str, Any]]:
        """Greedy answers to each sample's first question, with its reference (`h2ovl predict`/`evaluate`)."""
        if "input_ids" not in batch:
            return []
        return generate_answers(self.model, self.tokenizer, batch, self.hparams.max_new_tokens)

    def configure_optimizers(self) -> dict:
        optim = self.optim
        groups = parameter_groups(self.model, optim.lr, optim.weight_decay, optim.part_lr)
        optimizer = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = warmup_cosine(optimizer, total, int(total * optim.warmup_ratio), optim.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
