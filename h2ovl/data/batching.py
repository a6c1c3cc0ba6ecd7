"""How samples become micro-batches and optimizer steps: the data module's `batching` group (`data.batching.*`
in configs), a small frozen dataclass documented once, shown as its own group by `h2ovl fit --help` and
checked when it is built, so a contradiction is named before any data is read."""

from __future__ import annotations

from dataclasses import dataclass

from h2ovl.errors import SettingError


@dataclass(frozen=True)
class Batching:
    """Padded or packed rows, their sizes, and the global batch an optimizer step sees.

    Args:
        batch_size: rows per micro-batch and device (samples, or packed sequences).
        global_batch_size: samples per optimizer step over all devices (256 in the paper), without packing;
            gradient accumulation is derived from it, the micro-batch and the number of devices. None:
            Lightning's `accumulate_grad_batches` as configured.
        global_batch_rows: with packing (a row holds a varying number of samples), packed rows per optimizer
            step over all devices, from which accumulation is derived the same way.
        val_batch_size: samples per validation, test and prediction batch (None: `batch_size`).
        max_length: tokens kept per sample (never cutting an image span).
        pack_tokens: pack samples into sequences of this many tokens (None: pad each sample).
        pack_tiles: at most this many tiles per packed sequence.
        pack_buffer: samples held back to choose from when filling a packed row (first-fit decreasing).
        group_by_length: padded batches (no packing) chosen from a buffer of this many samples by length,
            the oldest sample always in the next batch (less padding; resumes exactly). None: in order.
    """

    batch_size: int = 4
    global_batch_size: int | None = None
    global_batch_rows: int | None = None
    val_batch_size: int | None = None
    max_length: int = 2048
    pack_tokens: int | None = None
    pack_tiles: int = 64
    pack_buffer: int = 64
    group_by_length: int | None = None

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value is not None and value < 1:
                raise SettingError(f"data.batching.{name} must be at least 1, got {value}")
        if self.pack_tokens is not None and self.global_batch_size is not None:
            raise SettingError(
                "data.batching.global_batch_size counts samples, which packed rows hold a varying number of: with "
                "data.batching.pack_tokens set, give data.batching.global_batch_rows (packed rows per optimizer "
                "step) instead"
            )
        if self.pack_tokens is None and self.global_batch_rows is not None:
            raise SettingError(
                "data.batching.global_batch_rows counts packed rows: without data.batching.pack_tokens, give "
                "data.batching.global_batch_size"
            )
        if self.group_by_length is not None and self.pack_tokens is not None:
            raise SettingError(
                "data.batching.group_by_length groups padded batches; with data.batching.pack_tokens the rows are "
                "packed: set one"
            )

    @property
    def val_rows(self) -> int:
        """Samples per validation, test and prediction batch."""
        return self.val_batch_size or self.batch_size

    @property
    def sample_tokens(self) -> int:
        """Tokens kept per sample: `max_length`, and no more than a packed row holds."""
        return self.max_length if self.pack_tokens is None else min(self.max_length, self.pack_tokens)

    @property
    def global_batch(self) -> tuple[int | None, str]:
        """The global batch that sets accumulation, and the key that names it: samples when padded, rows
        when packed."""
        if self.pack_tokens is None:
            return self.global_batch_size, "global_batch_size"
        return self.global_batch_rows, "global_batch_rows"
