"""`h2ovl data optimize`: a mixture -> LitData optimized chunks, for data that outgrows one disk.

Each item keeps the record's JSON, where it came from, and its images' encoded bytes; decoding and
tiling stay at training time, so the preprocessor can still be ablated on optimized data. One LitData
folder per dataset keeps `repeat_time` and `max_dynamic_patch` working unchanged; the written
`meta.json` points at them (or at `url_prefix`/NAME once the folder is uploaded to object storage).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from h2ovl.data.meta import DatasetSpec, MetaError, load_mixture
from h2ovl.data.records import BadSample
from h2ovl.data.sources import AnnotationSource, pack_blobs


class _ItemReader:
    """LitData's `fn`: picklable, and indexes the annotation file once per worker process."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self._source: AnnotationSource | None = None

    def __call__(self, index: int) -> dict:
        if self._source is None:
            self._source = AnnotationSource(self.spec)
        _, images = self._source.load(index)
        blobs = pack_blobs([Path(p).read_bytes() for p in images])
        return {"record": self._source.raw_text(index), "where": self._source.where(index), "images": blobs}


def optimize_mixture(
    meta: str | Path, out: str | Path, num_workers: int = 1, chunk_bytes: str = "64MB", url_prefix: str | None = None
) -> dict:
    """Write OUT/NAME (LitData) per dataset, OUT/meta.json and OUT/optimize_report.json; returns the report.

    Records that fail validation or name a missing image are left out, counted per dataset and reason."""
    from litdata import optimize

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, dict] = {}
    new_meta: dict[str, dict] = {}
    for spec in load_mixture(meta):
        if spec.optimized:
            raise MetaError(f"dataset {spec.name!r} is already optimized ({spec.optimized})")
        source = AnnotationSource(spec)
        valid, skipped = [], Counter()
        for index in range(len(source)):
            try:
                _, images = source.load(index)
                missing = [str(p) for p in images if not Path(p).is_file()]
                if missing:
                    raise BadSample("image_error", source.where(index), f"missing {missing}")
                valid.append(index)
            except BadSample as error:
                skipped[error.reason] += 1
        if not valid:
            raise MetaError(f"dataset {spec.name!r} ({spec.annotation}) has no valid record to optimize")
        optimize(
            fn=_ItemReader(spec),
            inputs=valid,
            output_dir=str((out / spec.name).resolve()),
            chunk_bytes=chunk_bytes,
            num_workers=num_workers,
            mode="overwrite",
            verbose=False,
        )
        report[spec.name] = {"records": len(source), "written": len(valid), "skipped": dict(skipped)}
        entry = {
            "optimized": f"{url_prefix.rstrip('/')}/{spec.name}" if url_prefix else spec.name,
            "repeat_time": spec.repeat_time,
        }
        if not url_prefix:  # the chunks sit beside the meta file written here
            entry["relative_to"] = "meta"
        if spec.max_dynamic_patch is not None:
            entry["max_dynamic_patch"] = spec.max_dynamic_patch
        if spec.data_augment:
            entry["data_augment"] = True
        new_meta[spec.name] = entry
    (out / "meta.json").write_text(json.dumps(new_meta, indent=2) + "\n", encoding="utf-8")
    (out / "optimize_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
