"""A finite, in-order view of a mixture for validation and testing (map-style, so Lightning shards it
with a DistributedSampler). Bad samples are counted in the batch rather than dropped silently."""

from __future__ import annotations

from torch.utils.data import Dataset

from h2ovl.data.packing import collate_rows
from h2ovl.data.records import BadSample
from h2ovl.data.samples import Sample, SampleBuilder


class EvalSamples(Dataset):
    """Every record of every dataset once (repeat_time ignored), in file order."""

    def __init__(self, builder: SampleBuilder, on_bad_sample: str = "skip", limit: int | None = None) -> None:
        self.builder = builder
        self.on_bad_sample = on_bad_sample
        self.index = [(d, r) for d, source in enumerate(builder.sources) for r in range(len(source))][:limit]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[int, Sample | BadSample]:
        """(position in the view, the sample or why it is bad): positions let validation pick a fixed
        subset whatever the number of ranks."""
        dataset, record = self.index[i]
        try:
            return i, self.builder.build(dataset, record)
        except BadSample as error:
            if self.on_bad_sample == "raise":
                raise
            error.dataset = self.builder.sources[dataset].spec.name
            return i, error


class EvalCollator:
    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[tuple[int, Sample | BadSample]]) -> dict:
        good = [(i, item) for i, item in items if isinstance(item, Sample)]
        skipped: dict[str, int] = {}
        for _, item in items:
            if isinstance(item, BadSample):
                key = f"{item.dataset}/{item.reason}"
                skipped[key] = skipped.get(key, 0) + 1
        batch = collate_rows([[s] for _, s in good], self.pad_token_id, packed=False) if good else {}
        if good:
            batch["positions"] = [i for i, _ in good]
        batch["skipped"] = skipped
        return batch
