"""The training module's argument groups: small typed dataclasses, each documented once here, which
LightningCLI shows as groups in `h2ovl fit --help` and configs set as nested keys (`model.optim.lr`,
`model.init.llm`, `model.trainable.vision`, `model.val_generation.samples`).

They are frozen: one default instance serves every module that leaves a group unset, and a group is
read, never changed, after the module is built. Checkpoints hold them as hyperparameters, so they are
registered with the checkpoint reader's allow-list (`weights_only` loads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from h2ovl.errors import SettingError
from h2ovl.training.loss import LossReduction, check_reduction
from h2ovl.training.weights import allow_in_checkpoints


@dataclass(frozen=True)
class Optimization:
    """AdamW, its warm-up and cosine schedule, and how a step's loss is formed and checked.

    Args:
        lr: AdamW's learning rate.
        weight_decay: AdamW's weight decay (norms, biases and the ViT's position and class embeddings are
            exempt).
        betas: AdamW's betas.
        part_lr: a part's own learning rate (`vision`, `projector`, `llm`), replacing `lr` for it.
        warmup_ratio: the fraction of the run's optimizer steps spent warming up linearly.
        min_lr_ratio: the cosine schedule's floor, as a fraction of the learning rate.
        loss_reduction: how supervised tokens are weighed, over the whole global batch (every accumulated
            micro-batch on every rank): "token" (every token alike), "sample" (every sample alike), "square"
            (a sample of n supervised tokens weighs 1/sqrt(n) per token).
        nonfinite_loss: what a NaN or infinite loss of an optimizer step does (checked once per step, after
            the loss is reduced over the global batch, so every rank decides alike): "stop" ends the run
            naming the step and its samples, the last checkpoint before it kept; "skip" drops that step's
            update (no weight or optimizer-state change) and counts it (`train/skipped_nonfinite`).
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    part_lr: dict[str, float] | None = None
    warmup_ratio: float = 0.03
    min_lr_ratio: float = 0.0
    loss_reduction: LossReduction = "token"
    nonfinite_loss: Literal["stop", "skip"] = "stop"

    def __post_init__(self) -> None:
        check_reduction(self.loss_reduction)
        if self.nonfinite_loss not in ("stop", "skip"):
            raise SettingError(f"model.optim.nonfinite_loss must be 'stop' or 'skip', got {self.nonfinite_loss!r}")


@dataclass(frozen=True)
class Initialization:
    """Where the model's weights and tokenizer come from; a part left unset starts from random weights of
    the preset's shape.

    Args:
        released: a released model directory or hub id (InternVL-chat layout: config.json, safetensors,
            tokenizer) whose architecture, preprocessor, weights and tokenizer replace the preset's (leave
            `model.preprocessor` and `model.pixel_shuffle` unset: the weights fix them).
        vision_weights: pretrained vision encoder weights: a timm state dict file (.safetensors, .pth,
            .bin) or a timm pretrained tag of the preset's ViT (e.g. `ogvl_dist` for InternViT-300M).
        llm: a pretrained causal LM, as a transformers directory or hub id (e.g.
            `h2oai/h2o-danube3-500m-base`); its config replaces the preset's.
        tokenizer: a tokenizer directory or hub id. Required by the real-size presets; the tiny presets
            default to the offline tiny tokenizer. Hub ids resolve through the libraries' caches
            (`HF_HUB_OFFLINE=1` is respected).
        checkpoint: a Lightning checkpoint whose *weights* start this stage (not a resume: optimizer,
            schedule, step and data position start fresh). Read memory-mapped, without unpickling code,
            and only its `state_dict`.
        exclude: parameter-name prefixes not taken from `checkpoint` (kept freshly initialised). A
            projector from a checkpoint with the other pixel-shuffle setting is carried over, its input
            layers rewritten; exclude `model.projector` to start it fresh instead.
    """

    released: str | None = None
    vision_weights: str | None = None
    llm: str | None = None
    tokenizer: str | None = None
    checkpoint: str | None = None
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class Trainable:
    """Which parts a stage trains.

    Args:
        vision: the vision encoder (all of it, unless `vision_last_blocks`).
        projector: the MLP projector.
        llm: the language model.
        vision_last_blocks: unfreeze only the last k ViT blocks (0: as `vision` says).
    """

    vision: bool = False
    projector: bool = True
    llm: bool = False
    vision_last_blocks: int = 0


@dataclass(frozen=True)
class ValGeneration:
    """Generation-based validation: greedy answers to the first `samples` validation samples (the same
    ones every time, on any number of ranks), scored by `task` ("auto": each record's `scorer` field) and
    logged as `val/<task>/<metric>` (e.g. `val/cer/cer`, `val/kie/score`) on every `every`-th validation
    run. The `best` checkpoint callback can monitor any of them (`best.monitor`).

    Args:
        samples: how many validation samples are answered (0: off).
        task: the scorer ("auto": each record's `scorer` field).
        every: answer on every `every`-th validation run.
        max_new_tokens: the answers' budget (None: the module's `max_new_tokens`).
        final_samples: how many the last validation of a fit (at `trainer.max_steps`) and `h2ovl validate`
            answer (None: `samples`): frequent validations cheap, the final figure on more samples (the
            first `samples` of them the same as before).
    """

    samples: int = 0
    task: str = "auto"
    every: int = 1
    max_new_tokens: int | None = None
    final_samples: int | None = None

    def __post_init__(self) -> None:
        if self.every < 1:
            raise SettingError(f"model.val_generation.every must be at least 1, got {self.every}")


allow_in_checkpoints(Optimization, Initialization, Trainable, ValGeneration)
