"""Learning-rate schedule as a pure function of the step, so a resumed or extended run needs only the step count."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, total: int, peak: float, warmup: float = 0.05, floor: float = 0.02) -> float:
    """Linear warm-up over ``warmup`` of the run, then cosine decay to ``floor * peak``."""
    w = max(1, int(total * warmup))
    if step < w:
        return peak * (step + 1) / w
    t = min(1.0, (step - w) / max(1, total - w))
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr
