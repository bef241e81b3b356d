"""Train the CRNN recognizer: synthetic printed text mixed with real TRAIN crops, CTC loss, resumable.

    python -m training.train_crnn --steps 12000 --out runs/crnn            # train (resumes runs/crnn/last.pt)
    python -m training.train_crnn --steps 12000 --out runs/crnn --export   # write serve_app/assets/crnn_slim.pt
    python -m training.train_crnn --steps 20 --batch-size 8 --no-real      # smoke run on tiny data
    python -m training.train_crnn --device cuda --workers 14 --batch-size 128 --time-limit 430 \
        --variant full --real-sets words sroie borndigital                 # the shipped model's first stage (see
                                                                           # scripts/gpu_train.sh and its card)

SROIE transcriptions are upper case whatever the print, so their loss is case-insensitive: for those samples the
CTC sees each letter's probability as the sum of its two cases (`case_folded_log_probs`). The CRNN's output layer
is factored (case-folded classes times a per-letter case score, `--plain-head` to opt out), so those samples train
what a letter is and never which case it is in: case is learnt from case-true data only.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from serve_app.ocr.alphabet import encode
from serve_app.ocr.models.crnn import CRNN, build_crnn
from serve_app.ocr.models.weights import ASSETS, read_weights, save_weights
from serve_app.ocr.processing.recognition import COLUMN_STRIDE, ctc_greedy, normalise, pad_crops, softmax
from training import checkpoint, datasets, scene_lines
from training.augment import arc, augment_real_crop
from training.corpus import recased_line
from training.loop import Budget, add_common_args, autocast, export_fp32, pick_device, stream_loader, warm_start
from training.metrics import cer, normalise_text
from training.schedule import lr_at, set_lr
from training.synth import render_crop

MAX_TRAIN_WIDTH = 800


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", default="slim", choices=["slim", "full"])
    p.add_argument("--plain-head", action="store_true",
                   help="one softmax over all classes instead of case-folded classes plus a per-letter case score")
    p.add_argument("--steps", type=int, default=12000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--synth-fraction", type=float, default=0.8, help="share of synthetic samples; the rest is real")
    p.add_argument("--no-real", action="store_true", help="synthetic data only (no ../shared needed)")
    p.add_argument("--real-sets", nargs="+", default=["words", "sroie"], choices=["words", "sroie", "borndigital"],
                   help="real TRAIN crops to mix in (SROIE with a case-insensitive loss; born-digital words "
                        "without the images held out for checking, see datasets.borndigital_words)")
    p.add_argument("--words-part", default="all", choices=["all", "fit"],
                   help="'fit': train on the word crops without those of the held-out IC15 frames, and report "
                        "accuracy on those (ic15_check) at every validation; see datasets.word_crops")
    p.add_argument("--sroie-share", type=float, default=0.35, help="share of SROIE lines among the real samples")
    p.add_argument("--vocab-share", type=float, default=0.3,
                   help="share of synthetic samples that render receipt words in random casing")
    p.add_argument("--scene-lines", type=int, default=0,
                   help="add ICDAR 2015 TRAIN line crops cut as the service cuts them (training/scene_lines.py), "
                   "from this many renders of each fit frame; 0: none")
    p.add_argument("--scene-line-share", type=float, default=0.3, help="share of those among the real samples")
    p.add_argument("--scene-line-busy", type=float, default=0.0,
                   help="share of those frames rebuilt with clutter and uneven light (training/clutter.py)")
    p.add_argument("--arc-share", type=float, default=0.0,
                   help="share of synthetic and real word samples set along a circle (augment.arc), as round signs")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--val-size", type=int, default=400)
    p.add_argument("--out", default="runs/crnn")
    p.add_argument("--export", action="store_true", help="export last.pt to the assets folder and stop")
    p.add_argument("--export-path", default=None, help="default: serve_app/assets/crnn_<variant>.pt")
    p.add_argument("--export-fp32", default=None, help="with --export: also write full-precision weights here")
    add_common_args(p)
    return p


Sample = tuple[np.ndarray, str, bool]  # grayscale crop, text, case-insensitive label


class Sampler:
    """Draws samples: synthetic with probability ``synth_fraction``, else a real TRAIN crop, distorted."""

    def __init__(self, rng: random.Random, synth_fraction: float, words: list[tuple[np.ndarray, str]],
                 lines: list[tuple[np.ndarray, str]] | None = None, lines_share: float = 0.0,
                 vocab: list[str] | None = None, vocab_share: float = 0.3,
                 scene: list[tuple[np.ndarray, str]] | None = None, scene_share: float = 0.0,
                 arc_share: float = 0.0) -> None:
        self.rng, self.synth_fraction, self.arc_share = rng, synth_fraction, arc_share
        self.words, self.lines, self.lines_share = words, lines or [], lines_share if lines else 0.0
        self.vocab, self.vocab_share = vocab or [], vocab_share if vocab else 0.0
        self.scene, self.scene_share = scene or [], scene_share if scene else 0.0

    def __call__(self) -> Sample:
        if not (self.words or self.lines or self.scene) or self.rng.random() < self.synth_fraction:
            text = recased_line(self.rng, self.vocab) if self.rng.random() < self.vocab_share else None
            gray, text = render_crop(self.rng, text)
            return self._maybe_arc(gray), text, False
        if self.scene and (not (self.words or self.lines) or self.rng.random() < self.scene_share):
            # already cut as the service cuts them: distorted only half the time
            gray, text = self.scene[self.rng.randrange(len(self.scene))]
            return (gray if self.rng.random() < 0.5 else augment_real_crop(self.rng, gray)), text, False
        case_free = not self.words or self.rng.random() < self.lines_share
        pool = self.lines if case_free else self.words
        gray, text = pool[self.rng.randrange(len(pool))]
        gray = augment_real_crop(self.rng, gray)
        return (gray if case_free else self._maybe_arc(gray)), text, case_free

    def _maybe_arc(self, gray: np.ndarray) -> np.ndarray:
        """Bend a word along a circle with probability ``arc_share`` (no draw at all when it is 0, so seeds hold)."""
        if self.arc_share and self.rng.random() < self.arc_share:
            return arc(self.rng, gray)
        return gray

    def batches(self, batch_size: int, pool: int = 8):  # noqa: ANN201
        """Endless batches of similar widths: draw ``pool`` batches' worth, sort by aspect, deal them out."""
        while True:
            items = [self() for _ in range(batch_size * pool)]
            items.sort(key=lambda it: it[0].shape[1] / max(it[0].shape[0], 1))
            chunks = [items[i: i + batch_size] for i in range(0, len(items), batch_size)]
            self.rng.shuffle(chunks)
            yield from chunks


_UPPER = torch.tensor(encode("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_LOWER = torch.tensor(encode("abcdefghijklmnopqrstuvwxyz"))


def case_folded_log_probs(logp: torch.Tensor, case_free: torch.Tensor) -> torch.Tensor:
    """For samples flagged ``case_free`` (N,), merge each letter's two cases into its upper-case class.

    ``logp`` is (T, N, C); targets of those samples are upper case, so CTC then ignores which case was read.
    The lower-case classes get (almost) zero probability so that every column still sums to one: PyTorch's CTC
    backward assumes normalised inputs, and with both cases kept its gradient pushes the lower case down, which
    teaches the model capitals on exactly the samples whose case is unknown.
    """
    if not bool(case_free.any()):
        return logp
    up, lo = _UPPER.to(logp.device), _LOWER.to(logp.device)
    folded = logp.clone()
    folded[:, :, up] = torch.logaddexp(logp[:, :, up], logp[:, :, lo])
    folded[:, :, lo] = -1e4
    return torch.where(case_free.to(logp.device)[None, :, None], folded, logp)


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def make_batch(samples: list[Sample]) -> Batch:
    """Padded crops, concatenated targets, input and target lengths, and the case-insensitive flags."""
    crops, targets, t_lens, in_lens, case_free = [], [], [], [], []
    for gray, text, free in samples:
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
        case_free.append(free)
    return (torch.from_numpy(pad_crops(crops)), torch.tensor(targets), torch.tensor(in_lens), torch.tensor(t_lens),
            torch.tensor(case_free))


def sequence_features(model: CRNN, x: torch.Tensor) -> torch.Tensor:
    """The BiLSTM outputs the output layer sees, one row per column: ``(N * T, 2 * hidden)``."""
    f = model.features(x).squeeze(2).transpose(1, 2)
    seq, _ = model.rnn(f)
    return seq.reshape(-1, seq.shape[-1])


def factor_output_layer(model: CRNN, state: dict[str, torch.Tensor], inputs: list[torch.Tensor]) -> int:
    """Warm-start a case-head CRNN from a plain CRNN's weights; returns how many columns the fit used.

    The body is copied. Each letter's case score starts as the plain model's upper-minus-lower logit, which is
    exact. Each folded class's logit is fitted by least squares, on the columns of ``inputs`` (batches of crops),
    to the log-sum-exp of the plain logits it merges, so the factored model starts out reading like the plain one.
    """
    model.load_state_dict({k: v.float() for k, v in state.items() if not k.startswith("classifier.")}, strict=False)
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode():
        feats = torch.cat([sequence_features(model, x.to(device)) for x in inputs]).float().cpu()
    w, b = state["classifier.weight"].float(), state["classifier.bias"].float()
    up, lo, to_folded = model.upper.cpu(), model.lower.cpu(), model.to_folded.cpu()
    z = feats @ w.T + b
    target = torch.stack([torch.logsumexp(z[:, to_folded == k], 1) for k in range(int(to_folded.max()) + 1)], 1)
    x = torch.cat([feats, torch.ones(len(feats), 1)], 1)
    sol = torch.linalg.lstsq(x, target).solution
    with torch.no_grad():
        model.case.weight.copy_(w[up] - w[lo])
        model.case.bias.copy_(b[up] - b[lo])
        model.classifier.weight.copy_(sol[:-1].T)
        model.classifier.bias.copy_(sol[-1])
    return len(feats)


def read(model: nn.Module, grays: list[np.ndarray], batch: int = 32) -> list[str]:
    """Greedy readings of grayscale crops (each decoded over its own width only)."""
    xs = [normalise(g) for g in grays]
    out: list[str] = []
    device = next(model.parameters()).device
    with torch.inference_mode():
        for i in range(0, len(xs), batch):
            chunk = xs[i: i + batch]
            logits = model(torch.from_numpy(pad_crops(chunk)).to(device)).float().cpu().numpy()
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
    device = pick_device(args.device)
    model = build_crnn(variant=args.variant, case_head=not args.plain_head).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    ckpt, step, history = checkpoint.resume(args.out, model, opt)
    if args.export:
        meta = {"trained_by": "training/train_crnn.py", "steps": step,
                "args": checkpoint.trained_args(ckpt) or vars(args), "history": history}
        path = save_weights(model, args.export_path or ASSETS / f"crnn_{args.variant}.pt", meta)
        print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if args.export_fp32:
            export_fp32(model, args.export_fp32, meta)
        return {"exported": str(path)}
    init_state = read_weights(args.init)["state_dict"] if args.init and step == 0 else None
    factor = init_state is not None and not args.plain_head and "case.weight" not in init_state
    if not factor:
        warm_start(model, args.init, step)

    words: list[tuple[np.ndarray, str]] = []
    lines: list[tuple[np.ndarray, str]] = []
    scene: list[tuple[np.ndarray, str]] = []
    if not args.no_real:
        if "words" in args.real_sets:
            part = args.words_part
            words = datasets.cached("train_words" + ("" if part == "all" else f"_{part}"),
                                    lambda: datasets.word_crops(part=part))
        if "borndigital" in args.real_sets:
            words = words + datasets.cached("train_borndigital_fit", lambda: datasets.borndigital_words("fit"))
        if "sroie" in args.real_sets:
            lines = [(g, t.upper()) for g, t in datasets.cached("train_sroie", datasets.line_crops)]
        if args.scene_lines:
            scene = scene_lines.cached(args.scene_lines, busy=args.scene_line_busy)
        print(f"{len(words)} real TRAIN word crops, {len(lines)} receipt lines, {len(scene)} scene lines")
    # the receipts' own words, rendered in every casing: their labels are all capitals, the print is not
    vocab = sorted({w for _, t in lines for w in t.split() if len(w) > 1 and any(c.isalpha() for c in w)})
    seed = args.seed * 1000 + step  # a resumed run continues with fresh samples

    def batches(rng: random.Random):  # noqa: ANN202 - runs in each data worker
        sampler = Sampler(rng, args.synth_fraction, words, lines, args.sroie_share, vocab, args.vocab_share,
                          scene, args.scene_line_share, args.arc_share)
        return (make_batch(b) for b in sampler.batches(args.batch_size))

    loader = stream_loader(batches, seed, args.workers)
    if factor:
        assert init_state is not None  # factor implies it
        columns = factor_output_layer(model, init_state, [next(loader)[0] for _ in range(8)])
        print(f"initialised from {args.init}, output layer factored on {columns} columns")
    heldout = heldout_synthetic(args.val_size)
    heldout_hard = heldout_synthetic(args.val_size // 2, seed=4321, clean=False)
    dev = words_dev() if not args.no_real else []
    check = [] if args.no_real else datasets.cached("train_borndigital_check",
                                                    lambda: datasets.borndigital_words("check"))
    ic15_check = datasets.cached("train_words_check", lambda: datasets.word_crops(part="check")) \
        if not args.no_real and args.words_part == "fit" else []
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    model.train()
    budget = Budget(args.steps, args.time_limit)
    bar = tqdm(total=args.steps, initial=step, desc="crnn", mininterval=10)
    t0 = time.time()
    while not budget.done(step):
        x, targets, in_lens, t_lens, case_free = next(loader)
        with autocast(device, args.amp):
            logits = model(x.to(device, non_blocking=True))
        logp = logits.float().log_softmax(-1).transpose(0, 1)  # T, N, C for CTCLoss
        loss = ctc(case_folded_log_probs(logp, case_free), targets.to(device), in_lens, t_lens)
        set_lr(opt, lr_at(budget.virtual_step(step), args.steps, args.lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if step % args.val_every == 0 or budget.done(step):
            model.eval()
            record = {"step": step, "loss": loss.item(), "elapsed_s": time.time() - t0,
                      "synthetic_clean": evaluate(model, heldout),
                      "synthetic_degraded": evaluate(model, heldout_hard)}
            if check:  # real words from images that no run trains on
                record["borndigital_check"] = evaluate(model, check)
            if ic15_check:  # real scene words from the held-out frames, with --words-part fit
                record["ic15_check"] = evaluate(model, ic15_check)
            if dev:
                record["words_dev"] = evaluate(model, dev)
            model.train()
            history.append(record)
            print(json.dumps(record), flush=True)
            checkpoint.save(ckpt, model, opt, step, history, args, Path(__file__).name)
    bar.close()
    return history[-1] if history else {}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
