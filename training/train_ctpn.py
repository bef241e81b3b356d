"""Train the CTPN detector on synthetic pages mixed with real TRAIN pages (SROIE receipts, ICDAR 2013 born-digital).

    python -m training.train_ctpn --steps 6000 --out runs/ctpn             # train (resumes runs/ctpn/last.pt)
    python -m training.train_ctpn --out runs/ctpn --export                 # write serve_app/assets/ctpn_*.pt
    python -m training.train_ctpn --steps 5 --size 256 --no-real           # smoke run on tiny data
    python -m training.train_ctpn --device cuda --workers 8 --batch-size 16 --time-limit 440 \
        --init serve_app/assets/ctpn_mobilenet_v3.pt                       # a GPU fine-tuning run (see docs)

Three sources of crops: synthetic pages, synthetic scenes made of real TRAIN word crops (`training/scenes.py`),
and real TRAIN pages (SROIE receipts, ICDAR 2013 born-digital) at random scales.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from serve_app.ocr.models.ctpn import build_ctpn
from serve_app.ocr.models.weights import ASSETS, save_weights
from serve_app.ocr.processing.detection import MEAN, STD
from training import checkpoint, datasets
from training.ctpn_targets import make_targets
from training.loop import Budget, add_common_args, autocast, export_fp32, pick_device, stream_loader, warm_start
from training.scenes import render_layout, render_scene
from training.schedule import lr_at, set_lr
from training.synth import render_page


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="mobilenet_v3", choices=["mobilenet_v3", "resnet18", "vgg16"])
    p.add_argument("--head-channels", type=int, default=256)
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--size", type=int, default=448, help="square training crop, a multiple of 16")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--synth-fraction", type=float, default=0.3, help="share of synthetic pages")
    p.add_argument("--scene-fraction", type=float, default=0.3, help="share of scenes made of real word crops")
    p.add_argument("--layout-fraction", type=float, default=0.0,
                   help="share of ICDAR 2015 TRAIN frame layouts (`fit` part), words in their real quadrilaterals")
    p.add_argument("--clutter-fraction", type=float, default=0.0,
                   help="share of layouts and scenes drawn busy: clutter behind the words, uneven light over all")
    p.add_argument("--hard-fraction", type=float, default=0.0,
                   help="share of frame layouts drawn hard: smaller, faded words, some at lost resolution")
    p.add_argument("--tie-ratio", type=float, default=None,
                   help="also ignore anchors within this share of a strip's best IoU (`ctpn_targets`); off: the paper")
    p.add_argument("--no-real", action="store_true", help="synthetic pages only (no ../shared needed)")
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--out", default="runs/ctpn")
    p.add_argument("--export", action="store_true", help="export last.pt to the assets folder and stop")
    p.add_argument("--export-path", default=None)
    p.add_argument("--export-fp32", default=None, help="with --export: also write full-precision weights here")
    add_common_args(p)
    return p


def merge_words_into_lines(words: list[dict]) -> list[list[float]]:
    """ICDAR 2013 labels words; CTPN learns lines: join words on one row whose gap is under 1.5 heights."""
    boxes = sorted((w["box"] for w in words if not w.get("ignore")), key=lambda b: b[0])
    lines: list[list[float]] = []
    for b in boxes:
        for ln in lines:
            h = min(b[3] - b[1], ln[3] - ln[1])
            overlap = min(b[3], ln[3]) - max(b[1], ln[1])
            if h > 0 and overlap / h > 0.6 and 0 <= b[0] - ln[2] < 1.5 * h:
                ln[:] = [ln[0], min(ln[1], b[1]), max(ln[2], b[2]), max(ln[3], b[3])]
                break
        else:
            lines.append(list(b))
    return lines


class PageSampler:
    """Square training crops with line boxes: synthetic pages, synthetic scenes or real TRAIN pages."""

    def __init__(self, rng: random.Random, size: int, synth_fraction: float, real: list[tuple[str, list]],
                 scene_fraction: float = 0.0, word_crops: list[np.ndarray] | None = None,
                 layout_fraction: float = 0.0, layouts: list[list[tuple[int, list]]] | None = None,
                 clutter_fraction: float = 0.0, hard_fraction: float = 0.0, tie_ratio: float | None = None) -> None:
        self.rng, self.size, self.synth_fraction, self.real = rng, size, synth_fraction, real
        self.scene_fraction, self.word_crops = scene_fraction, word_crops or []
        self.layout_fraction, self.layouts = layout_fraction, layouts or []
        self.clutter_fraction, self.hard_fraction = clutter_fraction, hard_fraction
        self.tie_ratio = tie_ratio

    def _busy(self) -> bool:
        return self.clutter_fraction > 0 and self.rng.random() < self.clutter_fraction

    def _hard(self) -> bool:  # draws nothing when off, so older seeded recipes make the same data
        return self.hard_fraction > 0 and self.rng.random() < self.hard_fraction

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        """A crop and its lines: boxes ``(L, 4)``, or quadrilaterals ``(L, 4, 2)`` for frame layouts."""
        if self.layouts and self.word_crops and self.rng.random() < self.layout_fraction:
            layout = self.layouts[self.rng.randrange(len(self.layouts))]
            return render_layout(self.rng, self.size, [(self.word_crops[i], np.asarray(q)) for i, q in layout],
                                 busy=self._busy(), hard=self._hard())
        r = self.rng.random()
        if self.word_crops and r < self.scene_fraction:
            return render_scene(self.rng, self.size, self.word_crops, busy=self._busy())
        if not self.real or r < self.scene_fraction + self.synth_fraction:
            img, lines = render_page(self.rng, self.size, self.size)
            return np.asarray(img), np.array([ln.box for ln in lines], dtype=np.float32).reshape(-1, 4)
        path, boxes = self.real[self.rng.randrange(len(self.real))]
        return self._crop(datasets.load_rgb(path), np.array(boxes, dtype=np.float32).reshape(-1, 4))

    def samples(self):  # noqa: ANN201
        """Endless (image, labels, vertical, side, side_mask) tuples, targets included, for a data loader."""
        grid = self.size // 16
        while True:
            img, boxes = self()
            t = make_targets(boxes, grid, grid, tie_ratio=self.tie_ratio)
            yield img, t.labels, t.vertical, t.side, t.side_mask

    def _crop(self, img: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        heights = boxes[:, 3] - boxes[:, 1]
        med = float(np.median(heights)) if len(heights) else 20.0
        s = self.rng.uniform(12, 40) / max(med, 1.0)
        h, w = img.shape[:2]
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.Resampling.BILINEAR))
        boxes = boxes * s
        x = self.rng.randint(0, max(0, nw - self.size))
        y = self.rng.randint(0, max(0, nh - self.size))
        canvas = np.full((self.size, self.size, 3), img.reshape(-1, 3).mean(0), dtype=np.uint8)
        part = img[y: y + self.size, x: x + self.size]
        canvas[: part.shape[0], : part.shape[1]] = part
        boxes = boxes - np.array([x, y, x, y], dtype=np.float32)
        clipped = np.clip(boxes, 0, [part.shape[1], part.shape[0], part.shape[1], part.shape[0]])
        # keep lines mostly inside the crop; a line cut vertically would teach wrong heights
        tall_enough = (clipped[:, 3] - clipped[:, 1]) >= 0.8 * (boxes[:, 3] - boxes[:, 1])
        keep = tall_enough & (clipped[:, 2] - clipped[:, 0] >= 8)
        return canvas, clipped[keep]


def real_pages() -> list[tuple[str, list]]:
    pages = [(it["path"], [w["box"] for w in it["words"] if not w.get("ignore")])
             for it in datasets.read_manifest("train/receipts_sroie")]
    pages += [(it["path"], merge_words_into_lines(it["words"]))
              for it in datasets.read_manifest("train/borndigital_ic13")]
    return pages


def to_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) to the normalised (N, 3, H, W) float input, on the images' device."""
    mean = torch.as_tensor(MEAN, device=images.device)
    std = torch.as_tensor(STD, device=images.device)
    return ((images.float() / 255.0 - mean) / std).permute(0, 3, 1, 2).contiguous()


def ctpn_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, vertical: torch.Tensor, side: torch.Tensor,
              side_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Text/background CE (all positives, hardest negatives at 3:1), smooth-L1 vertical and side regression."""
    logits = out["scores"].reshape(-1, 2)
    lab = labels.reshape(-1)
    ce = F.cross_entropy(logits, lab.clamp(min=0), reduction="none")
    pos = lab == 1
    neg_loss = ce.masked_fill(lab != 0, -1.0)
    n_pos = int(pos.sum())
    n_neg = min(max(3 * n_pos, 64), int((lab == 0).sum()))
    hard = neg_loss.topk(n_neg).values if n_neg else ce.new_zeros(0)
    cls = (ce[pos].sum() + hard.sum()) / max(n_pos + n_neg, 1)
    vpos = pos.reshape(labels.shape)
    reg = F.smooth_l1_loss(out["vertical"][vpos], vertical[vpos]) if n_pos else cls.new_zeros(())
    sreg = F.smooth_l1_loss(out["side"][side_mask], side[side_mask]) if bool(side_mask.any()) else cls.new_zeros(())
    total = cls + reg + sreg
    return total, {"cls": cls.item(), "vertical": reg.item(), "side": sreg.item()}


def word_crops_rgb() -> list[np.ndarray]:
    return [datasets.load_rgb(it["path"]) for it in datasets.read_manifest("train/words")]


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = pick_device(args.device)
    model = build_ctpn(backbone=args.backbone, head_channels=args.head_channels).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    ckpt, step, history = checkpoint.resume(args.out, model, opt)
    if args.export:
        path = args.export_path or ASSETS / f"ctpn_{args.backbone}.pt"
        meta = {"trained_by": "training/train_ctpn.py", "steps": step,
                "args": checkpoint.trained_args(ckpt) or vars(args), "history": history[-5:]}
        path = save_weights(model, path, meta)
        print(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if args.export_fp32:
            export_fp32(model, args.export_fp32, meta)
        return {"exported": str(path)}
    warm_start(model, args.init, step)
    real = [] if args.no_real else real_pages()
    crops = [] if args.no_real else word_crops_rgb()
    layouts = [] if args.no_real or not args.layout_fraction else datasets.ic15_layouts("fit")
    print(f"{len(real)} real TRAIN pages, {len(crops)} word crops for scenes, {len(layouts)} frame layouts")

    def samples(rng: random.Random):  # noqa: ANN202 - runs in each data worker
        return PageSampler(rng, args.size, args.synth_fraction, real, args.scene_fraction, crops,
                           args.layout_fraction, layouts, args.clutter_fraction, args.hard_fraction,
                           args.tie_ratio).samples()

    loader = stream_loader(samples, args.seed * 1000 + step, args.workers, batch_size=args.batch_size)
    model = model.to(memory_format=torch.channels_last).train()
    budget = Budget(args.steps, args.time_limit)
    bar = tqdm(total=args.steps, initial=step, desc="ctpn", mininterval=10)
    t0, running = time.time(), []
    while not budget.done(step):
        images, labels, vertical, side, side_mask = (t.to(device, non_blocking=True) for t in next(loader))
        x = to_tensor(images).to(memory_format=torch.channels_last)
        with autocast(device, args.amp):
            outputs = model(x)
        outputs = {k: v.float() for k, v in outputs.items()}
        loss, parts = ctpn_loss(outputs, labels, vertical, side, side_mask)
        set_lr(opt, lr_at(budget.virtual_step(step), args.steps, args.lr))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        running.append(parts)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if step % args.save_every == 0 or budget.done(step):
            record = {"step": step, "elapsed_s": time.time() - t0,
                      **{k: float(np.mean([r[k] for r in running])) for k in running[0]}}
            running = []
            history.append(record)
            print(json.dumps(record), flush=True)
            checkpoint.save(ckpt, model, opt, step, history, args, Path(__file__).name)
    bar.close()
    return history[-1] if history else {}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
