"""Average the weights of runs that share an architecture and a starting point (a "model soup").

    python -m training.soup --out serve_app/assets/crnn_slim.pt runs/crnn8/snap4211.pt runs/crnn8b/snap4091.pt

Two fine-tuning runs from the same weights, with different seeds and data mixes, land in the same basin; their
average reads better than either on held-out text. Averaging the outputs instead does not work for CTC models:
each run places its character spikes in slightly different columns, and the mean smears them.
Batch-norm statistics are averaged like the weights; integer counters come from the first file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from serve_app.ocr.models.weights import model_from_blob, read_weights, save_weights


def soup(paths: list[str | Path]) -> tuple[torch.nn.Module, dict]:
    """The uniform average of the weight files' tensors, as a model, and metadata naming its ingredients."""
    blobs = [read_weights(p) for p in paths]
    first = blobs[0]
    for p, b in zip(paths, blobs):
        if b["arch"] != first["arch"] or b["spec"] != first["spec"]:
            raise SystemExit(f"{p} is not the same architecture as {paths[0]}")
    state = {}
    for k, v in first["state_dict"].items():
        state[k] = (sum(b["state_dict"][k].float() for b in blobs) / len(blobs)) if v.is_floating_point() else v
    model = model_from_blob({**first, "state_dict": state})
    meta = {"trained_by": "training/soup.py", "soup_of": [{"file": Path(p).name, "meta": b.get("meta", {})}
                                                          for p, b in zip(paths, blobs)]}
    return model, meta


def main(args: argparse.Namespace) -> Path:
    model, meta = soup(args.weights)
    path = save_weights(model, args.out, meta)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB), the average of {len(args.weights)} files")
    return path


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+", help="servable weight files (exports or --snapshot files)")
    p.add_argument("--out", required=True)
    main(p.parse_args())
