"""A tiny distributed training run, to check the DistributedDataParallel path.

Run with ``torchrun --nproc_per_node 2 -m napari_cycsr._ddp_selftest OUT_DIR``. Every rank
trains the "tiny" preset for a few iterations on a small simulated image (CPU, gloo) and
writes ``OUT_DIR/rank<r>.json`` with a SHA-256 digest of its generator and discriminator
weights; rank 0 also writes the model file ``OUT_DIR/model.safetensors``. After a correct
DDP run every rank holds the same weights, so all digests are equal.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path


def _digest(module) -> str:  # noqa: ANN001 - torch module
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    """Train a few iterations under torchrun; see the module docstring."""
    import torch.distributed as dist
    from skimage import data

    from .simulate import simulate_pcle
    from .training import TrainConfig, Trainer

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: torchrun --nproc_per_node N -m napari_cycsr._ddp_selftest OUT_DIR")
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    sim = simulate_pcle(data.camera()[:128, 192:320], seed=0)
    config = TrainConfig(
        preset="tiny",
        iterations=3,
        batch_size=2,
        patch=32,
        device="cpu",
        preview_every=0,
        checkpoint_every=0,
    )
    trainer = Trainer(sim.lr, sim.bundle, config=config, values=sim.values)
    events = list(trainer.run())
    trainer.save(out / "model.safetensors")
    report = {
        "rank": trainer.rank,
        "world_size": trainer.world_size,
        "iteration": trainer.iteration,
        "events": len(events),
        "generator": _digest(trainer._g),
        "discriminator": _digest(trainer._d),
    }
    (out / f"rank{trainer.rank}.json").write_text(json.dumps(report))
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
