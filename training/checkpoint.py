"""Full training checkpoints (model, optimizer, step, history, args), so any run can stop and resume."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from serve_app.ocr.models.crnn import CRNN
from serve_app.ocr.models.ctpn import CTPN
from serve_app.ocr.models.weights import save_weights


def resume(out: str | Path, model: nn.Module, opt: torch.optim.Optimizer) -> tuple[Path, int, list[dict]]:
    """Load ``out/last.pt`` into model and optimizer if it exists; returns its path, the step and the history."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.pt"
    if not ckpt.is_file():
        return ckpt, 0, []
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    print(f"resumed from {ckpt} at step {state['step']}")
    return ckpt, state["step"], state["history"]


def save(ckpt: Path, model: CTPN | CRNN, opt: torch.optim.Optimizer, step: int, history: list[dict],
         args: argparse.Namespace, script: str) -> None:
    """The checkpoint, and with ``--snapshot`` servable weights too, so that a run cut short still leaves a result.

    ``script``: the training script's file name, which the weights' metadata names as what trained them.
    """
    tmp = ckpt.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "history": history,
                "args": vars(args)}, tmp)
    tmp.replace(ckpt)  # a crash while saving never leaves a broken last.pt
    if getattr(args, "snapshot", None):
        meta = {"trained_by": f"training/{script}", "steps": step, "args": vars(args), "history": history[-5:]}
        save_weights(model, args.snapshot.format(step=step), meta)


def trained_args(ckpt: Path) -> dict | None:
    """The options the run in ``ckpt`` trained with, for an export's metadata (not the export call's own)."""
    if not ckpt.is_file():
        return None
    return torch.load(ckpt, map_location="cpu", weights_only=False).get("args")
