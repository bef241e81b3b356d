"""Train the CRNN recognizer: synthetic printed text mixed with real TRAIN crops, CTC loss, resumable.

    python -m training.train_crnn --steps 12000 --out runs/crnn            # train (resumes runs/crnn/last.pt)
    python -m training.train_crnn --steps 12000 --out runs/crnn --export   # write serve_app/assets/crnn_slim.pt
    python -m training.train_crnn --steps 20 --batch-size 8 --no-real      # smoke run on tiny data
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from serve_app.ocr.alphabet import encode
from serve_app.ocr.models.crnn import build_crnn
from serve_app.ocr.models.weights import ASSETS, save_weights
from serve_app.ocr.processing.recognition import COLUMN_STRIDE, ctc_greedy, normalise, pad_crops, softmax
from training import checkpoint, datasets
from training.metrics import cer, normalise_text
from training.schedule import lr_at, set_lr
from training.synth import render_crop

MAX_TRAIN_WIDTH = 800


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="slim", choices=["slim", "full"])
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--synth-fraction", type=float, default=0.8, help="share of synthetic samples; the rest is real")
    p.add_argument("--no-real", action="store_true", help="synthetic data only (no ../shared needed)")
    p.add_argument("--real-sets", nargs="+", default=["words"], choices=["words", "sroie"],
                   help="real TRAIN crops to mix in; SROIE labels are upper case whatever the print, which teaches "
                        "the model to answer in capitals, so it is off by default")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=False,
                   help="bf16 autocast (slower than fp32 for this CRNN's training on our CPUs)")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--val-size", type=int, default=400)
    p.add_argument("--out", default="runs/crnn")
    p.add_argument("--export", action="store_true", help="export last.pt to the assets folder and stop")
    p.add_argument("--export-path", default=str(ASSETS / "crnn_slim.pt"))
    return p


class Sampler:
    """Draws (crop, text) pairs: synthetic with probability ``synth_fraction``, else a real TRAIN crop."""

    def __init__(self, rng: random.Random, synth_fraction: float, real: list[tuple[np.ndarray, str]]) -> None:
        self.rng, self.synth_fraction, self.real = rng, synth_fraction, real

    def __call__(self) -> tuple[np.ndarray, str]:
        if not self.real or self.rng.random() < self.synth_fraction:
            return render_crop(self.rng)
        return self.real[self.rng.randrange(len(self.real))]

    def batches(self, batch_size: int, pool: int = 8):  # noqa: ANN201
        """Endless batches of similar widths: draw ``pool`` batches' worth, sort by aspect, deal them out."""
        while True:
            items = [self() for _ in range(batch_size * pool)]
            items.sort(key=lambda it: it[0].shape[1] / max(it[0].shape[0], 1))
            chunks = [items[i: i + batch_size] for i in range(0, len(items), batch_size)]
            self.rng.shuffle(chunks)
            yield from chunks


def make_batch(samples: list[tuple[np.ndarray, str]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    crops, targets, t_lens, in_lens = [], [], [], []
    for gray, text in samples:
        x = normalise(gray, MAX_TRAIN_WIDTH)
        ids = encode(text)
        # CTC needs a column per character plus one between repeated characters
        need = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
        if need > x.shape[1] // COLUMN_STRIDE:
            continue
        crops.append(x)
        targets += ids
        t_lens.append(len(ids))
        in_lens.append(x.shape[1] // COLUMN_STRIDE)
    return (torch.from_numpy(pad_crops(crops)), torch.tensor(targets), torch.tensor(in_lens), torch.tensor(t_lens))


def read(model: nn.Module, grays: list[np.ndarray], batch: int = 32) -> list[str]:
    """Greedy readings of grayscale crops (each decoded over its own width only)."""
    xs = [normalise(g) for g in grays]
    out: list[str] = []
    with torch.inference_mode():
        for i in range(0, len(xs), batch):
            chunk = xs[i: i + batch]
            logits = model(torch.from_numpy(pad_crops(chunk))).float().numpy()
            for x, lg in zip(chunk, logits):
                out.append(ctc_greedy(softmax(lg[: x.shape[1] // COLUMN_STRIDE])).text)
    return out


def heldout_synthetic(n: int, seed: int = 1234, clean: bool = True) -> list[tuple[np.ndarray, str]]:
    """The fixed-seed held-out set of printed words and lines (black on white, all fonts) the model card reports.

    ``clean=False`` gives the harder training distribution (colours, blur, noise, JPEG) instead.
    """
    rng = random.Random(seed)
    return [render_crop(rng, clean=clean) for _ in range(n)]


def evaluate(model: nn.Module, items: list[tuple[np.ndarray, str]]) -> dict[str, float]:
    preds = read(model, [g for g, _ in items])
    exact = np.mean([p.strip() == t.strip() for p, (_, t) in zip(preds, items)])
    norm = np.mean([normalise_text(p).split() == normalise_text(t).split() for p, (_, t) in zip(preds, items)])
    c = np.mean([cer(p.strip(), t.strip()) for p, (_, t) in zip(preds, items)])
    return {"accuracy": float(exact), "accuracy_normalised": float(norm), "cer": float(c), "n": len(items)}


def words_dev() -> list[tuple[np.ndarray, str]]:
    return datasets.word_crops("eval/words_dev")


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_crnn(variant=args.variant)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    ckpt, step, history = checkpoint.resume(args.out, model, opt)
    if args.export:
        meta = {"trained_by": "training/train_crnn.py", "steps": step, "args": vars(args), "history": history}
        path = save_weights(model, args.export_path, meta)
        print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return {"exported": str(path)}

    real: list[tuple[np.ndarray, str]] = []
    if not args.no_real:
        if "words" in args.real_sets:
            real += datasets.cached("train_words", datasets.word_crops)
        if "sroie" in args.real_sets:
            real += datasets.cached("train_sroie", datasets.line_crops)
        print(f"{len(real)} real TRAIN crops")
    rng = random.Random(args.seed * 1000 + step)  # a resumed run continues with fresh samples
    sample = Sampler(rng, args.synth_fraction, real)
    heldout = heldout_synthetic(args.val_size)
    heldout_hard = heldout_synthetic(args.val_size // 2, seed=4321, clean=False)
    dev = words_dev() if not args.no_real else []
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    model = model.to(memory_format=torch.channels_last)
    model.train()
    bar = tqdm(total=args.steps, initial=step, desc="crnn", mininterval=10)
    t0 = time.time()
    batches = sample.batches(args.batch_size)
    while step < args.steps:
        x, targets, in_lens, t_lens = make_batch(next(batches))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x.to(memory_format=torch.channels_last))
        logp = logits.float().log_softmax(-1).transpose(0, 1)  # T, N, C for CTCLoss
        loss = ctc(logp, targets, in_lens, t_lens)
        set_lr(opt, lr_at(step, args.steps, args.lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if step % args.val_every == 0 or step == args.steps:
            model.eval()
            record = {"step": step, "loss": loss.item(), "elapsed_s": time.time() - t0,
                      "synthetic_clean": evaluate(model, heldout),
                      "synthetic_degraded": evaluate(model, heldout_hard)}
            if dev:
                record["words_dev"] = evaluate(model, dev)
            model.train()
            history.append(record)
            print(json.dumps(record), flush=True)
            checkpoint.save(ckpt, model, opt, step, history, args)
    bar.close()
    return history[-1] if history else {}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
