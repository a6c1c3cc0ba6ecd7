"""Several processes on CPU (gloo), through the real CLI: DDP and FSDP2 train exactly as one process
that accumulates the same global batch.

The data is built so that what breaks multi-process training happens in the first steps: samples
supervise different numbers of tokens (answers of 1 to 6 letters), and rank one's first micro-batch is
text-only (no tile at all) while the vision encoder trains. One process with micro-batch 2 and two
accumulated micro-batches sees the same global batch of 4 as two processes with micro-batch 2 each.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from h2ovl.data.stream import epoch_order

from conftest import conversation, noise_image, write_jsonl
from training_runs import ROOT, h2ovl_fit, last_checkpoint, metric_history, mlflow_runs, tiny_run_config, write_config

N_RECORDS, SEED, STEPS = 24, 0, 4


def _uneven_dataset(folder: Path) -> Path:
    """Letters questions with answers of uneven length; the records rank one reads first (positions 1
    and 3 of the epoch order) have no image."""
    order = epoch_order([N_RECORDS], [1.0], SEED, 0)[:, 1]
    text_only = {int(order[1]), int(order[3])}
    rng = random.Random(0)
    records = []
    for i in range(N_RECORDS):
        answer = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 6)))
        if i in text_only:
            records.append(conversation("Which letters come next?", answer, id=f"r{i}"))
            continue
        name = f"img{i}.png"
        noise_image(rng.randint(40, 160), rng.randint(40, 120), seed=i).save(folder / name)
        records.append(conversation("<image>\nWhich letters come next?", answer, image=name, id=f"r{i}"))
    return write_jsonl(folder / "letters.jsonl", records)


def _fit(
    tmp: Path, name: str, data: Path, *args: str, steps: int = STEPS, trainer: str | None = None, model=None, **optim
) -> None:
    config = tiny_run_config(tmp, name, steps, train=str(data), val=None, global_batch_size=4, seed=SEED)
    if trainer:
        config["extends"].append({"trainer": str(ROOT / "configs/trainer" / trainer)})
    config["model"] = {"optim": optim, **(model or {})}
    config["checkpoint"] = {"every_n_train_steps": 2}
    # Clipping that acts (the tiny model's first gradients are far above 0.05), so it is checked too.
    h2ovl_fit(write_config(tmp / f"{name}.yaml", config), "--trainer.gradient_clip_val", "0.05", *args, timeout=420)


def _assert_same_weights(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for key, weight in expected.items():
        torch.testing.assert_close(actual[key], weight, atol=2e-5, rtol=1e-4, msg=key)


def _assert_same_losses(tmp: Path, expected: str, actual: str) -> None:
    losses = {
        name: metric_history(tmp, mlflow_runs(tmp, name)[0].info.run_id, "train/loss") for name in (expected, actual)
    }
    assert sorted(losses[actual]) == list(range(STEPS))
    for step, loss in losses[actual].items():
        assert loss == pytest.approx(losses[expected][step], abs=1e-5)


@pytest.mark.parametrize(
    "reduction",
    ["token", pytest.param("sample", marks=pytest.mark.slow), pytest.param("square", marks=pytest.mark.slow)],
)
def test_ddp_with_text_only_micro_batches_matches_one_process(tmp_path: Path, reduction: str):
    data = _uneven_dataset(tmp_path)
    _fit(tmp_path, "single", data, "--trainer.devices", "1", loss_reduction=reduction)
    _fit(tmp_path, "ddp", data, "--trainer.devices", "2", "--trainer.strategy", "ddp", loss_reduction=reduction)

    single, ddp = last_checkpoint(tmp_path, "single"), last_checkpoint(tmp_path, "ddp")
    assert single["global_step"] == ddp["global_step"] == STEPS
    _assert_same_weights(single["state_dict"], ddp["state_dict"])
    # The logged loss is the global batch's weighted mean, over ranks and accumulated micro-batches.
    _assert_same_losses(tmp_path, "single", "ddp")
    # Every rank's data position is in the checkpoint (with packing or skips they differ), not rank zero's only.
    per_rank = ddp["H2OVLDataModule"]["per_rank"]
    assert [s["stream"]["world_size"] for s in per_rank] == [2, 2] and [s["stream"]["batches"] for s in per_rank] == [
        STEPS,
        STEPS,
    ]


def test_fsdp2_trains_saves_and_resumes_as_one_process(tmp_path: Path):
    """FSDP2 (`fully_shard` per layer on a 2-process CPU mesh) with clipping, weight decay groups,
    a text-only micro-batch, and a full-state checkpoint that another run resumes from."""
    data = _uneven_dataset(tmp_path)
    _fit(tmp_path, "single", data, "--trainer.devices", "1", weight_decay=0.5)
    # With generation-based validation of one sample: rank one has none to answer, and still must take
    # part in every forward of rank zero's generation.
    validation = (
        "--data.val",
        str(data),
        "--data.val_limit",
        "4",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.val_check_interval",
        "2",
        "--trainer.num_sanity_val_steps",
        "0",
    )
    _fit(
        tmp_path,
        "fsdp",
        data,
        "--checkpoint.save_top_k",
        "-1",
        *validation,
        trainer="fsdp-cpu.yaml",
        weight_decay=0.5,
        model={"val_generation": {"samples": 1, "task": "cer", "max_new_tokens": 5}},
    )
    single, fsdp = last_checkpoint(tmp_path, "single"), last_checkpoint(tmp_path, "fsdp")
    assert fsdp["global_step"] == STEPS
    # Equal weights after decay (0.5, so decay groups by name matter) and clipping; the checkpoint holds
    # every tensor whole, under the same names as on one device.
    _assert_same_weights(single["state_dict"], fsdp["state_dict"])
    _assert_same_losses(tmp_path, "single", "fsdp")
    metrics = mlflow_runs(tmp_path, "fsdp")[0].data.metrics
    assert "val/loss" in metrics and "val/cer/cer" in metrics

    (halfway,) = (tmp_path / "runs/fsdp/checkpoints").glob(f"*step={STEPS // 2}.ckpt")
    _fit(tmp_path, "fsdp-resumed", data, "--ckpt_path", str(halfway), trainer="fsdp-cpu.yaml", weight_decay=0.5)
    resumed = last_checkpoint(tmp_path, "fsdp-resumed")
    assert resumed["global_step"] == STEPS
    _assert_same_weights(single["state_dict"], resumed["state_dict"])


def test_fsdp2_reduce_scatters_once_per_optimizer_step_and_trains_as_one_process(tmp_path: Path):
    """Accumulating two micro-batches per rank: the first reduce-scatters nothing (gradients accumulate in
    each unit), the last reduces them; the weights equal one process accumulating the same global batch."""
    import json

    data = _uneven_dataset(tmp_path)
    counts = tmp_path / "counts.json"
    common = dict(steps=2, weight_decay=0.5)
    _fit(tmp_path, "single", data, "--trainer.devices", "1", "--data.batching.global_batch_size", "8", **common)
    _fit(
        tmp_path,
        "fsdp",
        data,
        "--data.batching.global_batch_size",
        "8",
        "--trainer.callbacks+=support.faults.CountReduceScatter",
        "--trainer.callbacks.out",
        str(counts),
        trainer="fsdp-cpu.yaml",
        **common,
    )
    per_batch = json.loads(counts.read_text())
    assert [idx for idx, _ in per_batch] == [0, 1, 2, 3]  # 2 steps x 2 micro-batches
    assert [n for idx, n in per_batch if idx % 2 == 0] == [0, 0] and all(n > 0 for idx, n in per_batch if idx % 2 == 1)
    _assert_same_weights(
        last_checkpoint(tmp_path, "single")["state_dict"], last_checkpoint(tmp_path, "fsdp")["state_dict"]
    )


def test_hybrid_sharding_replicates_across_groups_and_trains_as_one_process(tmp_path: Path):
    """`shard_size: 1` over two processes: two replicas, each sharded over one process (HSDP, a 2-D mesh);
    gradients all-reduced between them. The weights equal one process on the same global batch, and the
    full checkpoint resumes."""
    import json

    data = _uneven_dataset(tmp_path)
    placements = tmp_path / "placements.json"
    _fit(tmp_path, "single", data, "--trainer.devices", "1", steps=2, weight_decay=0.5)
    _fit(
        tmp_path,
        "hsdp",
        data,
        "--trainer.strategy.shard_size",
        "1",
        "--trainer.callbacks+=support.faults.RecordPlacements",
        "--trainer.callbacks.out",
        str(placements),
        trainer="fsdp-cpu.yaml",
        steps=2,
        weight_decay=0.5,
    )
    recorded = json.loads(placements.read_text())
    assert recorded["mesh"] == ["replicate", "shard"] and recorded["placements"] == ["(Replicate(), Shard(dim=0))"]
    _assert_same_weights(
        last_checkpoint(tmp_path, "single")["state_dict"], last_checkpoint(tmp_path, "hsdp")["state_dict"]
    )
