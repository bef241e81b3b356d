"""What both training scripts share: device choice, data generated in worker processes, warm starts, time budgets.

On a GPU machine the model is fast and data generation (Pillow rendering) is the limit, so batches are built in
``--workers`` processes, each with its own seed; on a 2-core CPU, ``--workers 0`` keeps everything in-process.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from serve_app.ocr.models.crnn import CRNN
from serve_app.ocr.models.ctpn import CTPN
from serve_app.ocr.models.weights import read_weights


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu or cuda")
    p.add_argument("--workers", type=int, default=0, help="data-generating processes (0: in the training process)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds of training; the LR schedule follows whichever of steps or time runs out first")
    p.add_argument("--init", default=None, help="start from these weights (a shipped .pt), then train on")
    p.add_argument("--snapshot", default=None,
                   help="also write servable fp16 weights here at every save ({step} in it becomes the step)")
    p.add_argument("--amp", default="off", choices=["off", "bf16"],
                   help="bf16 autocast for the forward pass (CPUs with AMX or native bf16, and GPUs); "
                        "weights and optimizer stay fp32")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = False  # widths vary batch to batch
    return device


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 autocast where asked for: on a CPU with AMX tiles it trains the CRNN 2.3x faster than fp32."""
    if amp == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warm_start(model: nn.Module, path: str | None, step: int) -> None:
    """Load shipped weights into a fresh run (a resumed run already has its own)."""
    if path and step == 0:
        blob = read_weights(path)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
        print(f"initialised from {path}")


class Stream(IterableDataset):
    """Endless items from ``make(rng)``, an iterator factory; each worker gets its own seed."""

    def __init__(self, make: Callable[[random.Random], Iterator[Any]], seed: int) -> None:
        self.make, self.seed = make, seed

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        wid = info.id if info is not None else 0
        if info is not None:
            torch.set_num_threads(1)
        return self.make(random.Random(self.seed * 7919 + wid))


def stream_loader(make: Callable[[random.Random], Iterator[Any]], seed: int, workers: int,
                  batch_size: int | None = None) -> Iterator[Any]:
    """Iterate ``make``'s items (batched by the loader when ``batch_size`` is given) from ``workers`` processes."""
    loader = DataLoader(Stream(make, seed), batch_size=batch_size, num_workers=workers,
                        prefetch_factor=4 if workers else None, persistent_workers=bool(workers))
    return iter(loader)


class Budget:
    """Progress through a run as the larger of the step fraction and the time fraction."""

    def __init__(self, steps: int, time_limit: float | None) -> None:
        self.steps, self.time_limit, self.t0 = steps, time_limit, time.time()

    def progress(self, step: int) -> float:
        p = step / self.steps
        if self.time_limit:
            p = max(p, (time.time() - self.t0) / self.time_limit)
        return min(p, 1.0)

    def virtual_step(self, step: int) -> int:
        """The step the LR schedule should see, so a time-limited run still warms up and decays fully."""
        return int(self.progress(step) * self.steps)

    def done(self, step: int) -> bool:
        return self.progress(step) >= 1.0


def export_fp32(model: CTPN | CRNN, path: str | Path, meta: dict[str, Any]) -> Path:
    """Full-precision weights without optimizer state, to keep training elsewhere from a small file."""
    from serve_app.ocr.models.weights import save_weights

    return save_weights(model, path, meta, half=False)
