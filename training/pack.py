"""Pack what training needs into one small folder, for a GPU machine that has no ``../shared``, fonts or word list.

    python -m training.pack --out .pack        # then on that machine:
    tar -xJf .pack/fonts.tar.xz -C .pack
    OCR_SHARED_DIR=.pack/shared OCR_FONT_DIRS=.pack/fonts OCR_WORDLIST=.pack/words.txt.gz python -m training.train_crnn

The copy keeps the manifests' format but re-encodes images smaller (grayscale receipts at training scale, WebP), so
it fits the 64 MiB a device call can carry with the repository (47 MiB with the busy scene lines, which are packed
built, since building them needs our detector and the frames). It is a cache, never committed (``.pack/`` is
ignored by git).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from training import datasets, scene_lines
from training.corpus import dictionary
from training.fonts import latin_fonts


def _save(img: Image.Image, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "WEBP", quality=quality, method=6)


def pack_pages(name: str, out: Path, target_height: float, gray: bool, quality: int, limit: int | None) -> None:
    """Page sets, scaled so that the median line is at most ``target_height`` px; boxes scaled with them."""
    items = datasets.read_manifest(f"train/{name}")[:limit]
    _mk(out / "train" / name)
    with open(out / "train" / name / "manifest.jsonl", "w") as f:
        for it in items:
            img = Image.open(it["path"]).convert("L" if gray else "RGB")
            heights = [w["box"][3] - w["box"][1] for w in it["words"]] or [target_height]
            s = min(1.0, target_height / max(float(np.median(heights)), 1.0))
            if s < 1.0:
                img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))),
                                 Image.Resampling.LANCZOS)
            rel = f"images/{Path(it['image']).stem}.webp"
            _save(img, out / "train" / name / rel, quality)
            words = [{**w, "box": [round(v * s, 1) for v in w["box"]],
                      "poly": [[round(x * s, 1), round(y * s, 1)] for x, y in w.get("poly", [])]} for w in it["words"]]
            rec = {k: v for k, v in it.items() if k not in ("path", "words", "image")}
            f.write(json.dumps({**rec, "image": rel, "width": img.width, "height": img.height, "words": words}) + "\n")


def pack_crops(folder: str, out: Path, max_height: int, quality: int) -> None:
    """Word crops, at most ``max_height`` px high (the recognizer reads 32)."""
    items = datasets.read_manifest(folder)
    _mk(out / folder)
    with open(out / folder / "manifest.jsonl", "w") as f:
        for it in items:
            img = Image.open(it["path"]).convert("RGB")
            if img.height > max_height:
                img = img.resize((max(1, round(img.width * max_height / img.height)), max_height),
                                 Image.Resampling.LANCZOS)
            rel = f"images/{Path(it['image']).stem}.webp"
            _save(img, out / folder / rel, quality)
            rec = {k: v for k, v in it.items() if k not in ("path", "image")}
            f.write(json.dumps({**rec, "image": rel}) + "\n")


def pack_scene_lines(out: Path, name: str, items: list[tuple[np.ndarray, str]], quality: int) -> None:
    """Built scene lines, where `scene_lines.cached` finds them: the GPU machine cannot rebuild them (no frames)."""
    folder = out / scene_lines.PACKED / name
    _mk(folder / "images")
    with open(folder / "manifest.jsonl", "w") as f:
        for k, (gray, text) in enumerate(items):
            _save(Image.fromarray(gray), folder / "images" / f"{k:05d}.webp", quality)
            f.write(json.dumps({"image": f"images/{k:05d}.webp", "text": text}) + "\n")


def _mk(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def size_mb(path: Path) -> float:
    if path.is_file():
        return path.stat().st_size / 2**20
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main(args: argparse.Namespace) -> None:
    out = Path(args.out)
    shared = out / "shared"
    if out.exists():
        shutil.rmtree(out)
    pack_crops("train/words", shared, 64, 85)
    pack_crops("eval/words_dev", shared, 64, 85)  # validation only, as on the CPU
    pack_pages("receipts_sroie", shared, args.receipt_line_height, True, args.receipt_quality, args.receipts)
    pack_pages("borndigital_ic13", shared, 40, False, 85, None)
    for busy in args.scene_lines:
        pack_scene_lines(shared, scene_lines.cache_name(busy=busy), scene_lines.cached(busy=busy), 90)
    with tarfile.open(out / "fonts.tar.xz", "w:xz") as tar:  # unpack there with tar -xJf
        for font in latin_fonts():
            if Path(font).stat().st_size <= args.max_font_kb * 1024:
                tar.add(font, arcname=f"fonts/{Path(font).name}")
    with gzip.open(out / "words.txt.gz", "wt") as f:
        f.write("\n".join(dictionary()))
    for part in ("shared/train/words", "shared/eval", "shared/train/receipts_sroie", "shared/train/borndigital_ic13",
                 f"shared/{scene_lines.PACKED}", "fonts.tar.xz", "words.txt.gz"):
        print(f"{part}: {size_mb(out / part):.1f} MiB")
    print(f"total {size_mb(out):.1f} MiB")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=".pack")
    p.add_argument("--receipts", type=int, default=None, help="first N receipts only")
    p.add_argument("--receipt-line-height", type=float, default=26)
    p.add_argument("--receipt-quality", type=int, default=40)
    p.add_argument("--scene-lines", type=float, nargs="*", default=[0.6], metavar="BUSY",
                   help="pack the built scene lines of these busy shares (built first if missing)")
    p.add_argument("--max-font-kb", type=int, default=400, help="leave out larger font files")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
