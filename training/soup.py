"""Average two weights files of one architecture: a fine-tuned model pulled part-way back to where it started.

Fine-tuning the slim CRNN on detected scene lines (its stage 9) taught it the crops the service cuts, but it drifted
on tight word crops. Interpolating its weights with the model it started from (WiSE-FT, Wortsman et al. 2022) keeps
most of the gain and the old model's robustness; both come from one ancestor, so their weights stay compatible.
The CTPN ships the same way: stage 5 (busy frames) halfway back to stage 4.

    python -m training.soup serve_app/assets/ctpn_mobilenet_v3.pt runs/ctpn5/snap2892.pt --alpha 0.5 --out soup.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import torch

from serve_app.ocr.models.crnn import CRNN
from serve_app.ocr.models.ctpn import CTPN
from serve_app.ocr.models.weights import load_model, save_weights


def interpolate(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * tuned`` for floating tensors; counters and other integers from ``tuned``."""
    if start.keys() != tuned.keys():
        raise ValueError("the two models have different parameters: not one architecture")
    return {k: torch.lerp(start[k].float(), tuned[k].float(), alpha).to(tuned[k].dtype)
            if tuned[k].is_floating_point() else tuned[k] for k in tuned}


def main(args: argparse.Namespace) -> Path:
    start, start_meta = load_model(args.start)
    tuned, tuned_meta = load_model(args.tuned)
    tuned.load_state_dict(interpolate(start.state_dict(), tuned.state_dict(), args.alpha))
    meta = {"trained_by": f"training/{Path(__file__).name}", "alpha": args.alpha,
            "start": {"file": str(args.start), **{k: start_meta.get(k) for k in ("trained_by", "steps")}},
            "tuned": {"file": str(args.tuned), **{k: tuned_meta.get(k) for k in ("trained_by", "steps", "args")}}}
    path = save_weights(cast(CTPN | CRNN, tuned), args.out, meta)  # load_model builds one of the two
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): {1 - args.alpha:.2f} x {args.start} "
          f"+ {args.alpha:.2f} x {args.tuned}")
    return path


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("start", help="the weights fine-tuning started from")
    p.add_argument("tuned", help="the fine-tuned weights")
    p.add_argument("--alpha", type=float, default=0.5, help="0: start, 1: tuned")
    p.add_argument("--out", required=True)
    main(p.parse_args())
