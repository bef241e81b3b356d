"""Pack what training needs into one small folder, for a GPU machine that has no ``../shared``, fonts or word list.

    python -m training.pack --out .pack        # then on that machine:
    tar -xJf .pack/fonts.tar.xz -C .pack
    OCR_SHARED_DIR=.pack/shared OCR_FONT_DIRS=.pack/fonts OCR_WORDLIST=.pack/words.txt.gz python -m training.train_crnn

The copy keeps the manifests' format but re-encodes images smaller (grayscale receipts at training scale, WebP), and
keeps of each font only the glyphs of our alphabet (`subset_font`), so that it fits beside the repository in the
64 MiB a device call carries: the repository is 24.4 MiB since the shipped CRNN (18 MB) is in it, and the pack was
47 MiB with fonts whole (9.1 MiB, and only those under 400 kB), 71.5 MiB together; now 37.9 MiB, 62.3 together, with
every font (2.3 MiB) and receipts at WebP quality 30 (`--receipt-quality`). The scene lines are packed
built, since building them needs our detector and the frames. It is a cache, never committed (``.pack/`` is
ignored by git). What it and the repository weigh together is printed last.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from serve_app.ocr.alphabet import CHARSET
from training import datasets, scene_lines
from training.corpus import dictionary
from training.fonts import font_dirs, latin_fonts

#: What one device call carries: the repository's files and the pack together.
DEVICE_CARRY_MIB = 64.0


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


def subset_font(path: str | Path) -> bytes:
    """The font with only the glyphs of our alphabet, and all that lays them out: kerning, layout features, hinting.

    We render nothing else (`training.corpus` draws from the alphabet), and a font whole is 5-20 times larger. Glyphs
    render as the whole font renders them: of the alphabet drawn in each of this machine's 179 fonts at 13, 24, 40 and
    64 px, all 716 renders have the same advances and size, 674 the same pixels, and the rest differ by at most 17
    levels of 255, 0.34 on average (anti-aliasing of hinted outlines: FreeMono's and FreeSerif's obliques, DejaVu's
    condensed and italic faces).
    """
    from fontTools import subset
    from fontTools.ttLib import TTFont

    options = subset.Options()
    options.layout_features = ["*"]
    options.legacy_kern = True  # FreeType's own kerning reads the old 'kern' table
    options.hinting_tables = ["*"]
    options.name_IDs = ["*"]
    options.notdef_outline = True
    font = TTFont(str(path))
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in CHARSET])
    subsetter.subset(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def pack_fonts(out: Path) -> None:
    """Every font this machine trains with, subset, as one archive (unpack it there with ``tar -xJf``).

    All of them, each under its path in its font folder, so that a seed picks the same fonts there (`latin_fonts`
    sorts them by name, then path). By name alone, the 12 fonts Debian installs twice (``liberation`` and
    ``liberation2``) overwrote each other there.
    """
    logging.getLogger("fontTools").setLevel(logging.ERROR)  # "FFTM NOT subset": a timestamp table, dropped
    roots = [Path(d) for d in font_dirs()]  # as `latin_fonts` found them, under one of these
    with tarfile.open(out, "w:xz") as tar:
        for font in latin_fonts():
            data = subset_font(font)
            path = Path(font)
            root = next((r for r in roots if path.is_relative_to(r)), path.parent)
            info = tarfile.TarInfo(f"fonts/{path.relative_to(root).as_posix()}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def repository_mib() -> float:
    """What the repository's tracked files weigh: they travel with every device call."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=datasets.REPO, capture_output=True,
                           check=True).stdout.split(b"\0")
    files = [datasets.REPO / n.decode() for n in names if n]
    return sum(f.stat().st_size for f in files if f.is_file()) / 2**20


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
    pack_fonts(out / "fonts.tar.xz")
    with gzip.open(out / "words.txt.gz", "wt") as f:
        f.write("\n".join(dictionary()))
    for part in ("shared/train/words", "shared/eval", "shared/train/receipts_sroie", "shared/train/borndigital_ic13",
                 f"shared/{scene_lines.PACKED}", "fonts.tar.xz", "words.txt.gz"):
        print(f"{part}: {size_mb(out / part):.1f} MiB")
    total, repository = size_mb(out), repository_mib()
    print(f"total {total:.1f} MiB; with the repository ({repository:.1f} MiB) {total + repository:.1f} MiB of the "
          f"{DEVICE_CARRY_MIB:.0f} a device call carries")
    if total + repository > DEVICE_CARRY_MIB:
        raise SystemExit("too large to carry: pack fewer receipts (--receipts) or at a lower --receipt-quality")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=".pack")
    p.add_argument("--receipts", type=int, default=None, help="first N receipts only")
    p.add_argument("--receipt-line-height", type=float, default=26)
    # 30: the shipped CRNN reads 3,236 lines of 60 TRAIN receipts packed so as at 40 (0.876 / 0.875, CER 0.015),
    # in 12 % fewer bytes; at 25 it loses a point
    p.add_argument("--receipt-quality", type=int, default=30)
    p.add_argument("--scene-lines", type=float, nargs="*", default=[0.6], metavar="BUSY",
                   help="pack the built scene lines of these busy shares (built first if missing)")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
