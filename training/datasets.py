"""Loaders for the real TRAIN and eval sets in ``../shared`` (read through `OCR_SHARED_DIR`, never copied)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from serve_app.ocr.alphabet import sanitize
from serve_app.ocr.processing.recognition import to_gray

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``OCR_SHARED_DIR`` if set, else ``../shared`` beside the checkout."""
    return Path(os.environ.get("OCR_SHARED_DIR", REPO.parent / "shared")).resolve()


def read_manifest(folder: str | Path) -> list[dict[str, Any]]:
    folder = Path(folder)
    if not folder.is_absolute():
        folder = shared_dir() / folder
    with open(folder / "manifest.jsonl") as f:
        items = [json.loads(line) for line in f if line.strip()]
    for it in items:
        it["path"] = str(folder / it["image"])
    return items


def load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def word_crops(folder: str = "train/words", part: str = "all") -> list[tuple[np.ndarray, str]]:
    """Labelled word crops as grayscale arrays (labels mapped to our alphabet).

    ``part`` splits the crops cut from ICDAR 2015 TRAIN frames as `ic15_layouts` splits the frames: ``check`` is
    the crops of the held-out fifth, ``fit`` everything else (IIIT5K included). A recognizer trained on ``fit``
    leaves real scene words to choose decoding settings with; the born-digital ``check`` words are too easy.
    """
    if part not in ("all", "fit", "check"):
        raise ValueError(f"unknown part '{part}': all, fit or check")
    out = []
    for it in read_manifest(folder):
        if not in_part(it.get("source_image"), part):
            continue
        text = sanitize(it["text"]).strip()
        if text:
            out.append((to_gray(load_rgb(it["path"])), text))
    return out


def held_out(name: str, every: int = 5) -> bool:
    """A fixed one-in-``every`` share of items, chosen by a hash of their name: the same on every machine."""
    return int(hashlib.sha1(Path(name).name.encode()).hexdigest(), 16) % every == 0


def in_part(frame: str | None, part: str) -> bool:
    """Whether an item cut from ``frame`` (None: from no IC15 frame) belongs to ``part``: all, fit or check."""
    return part == "all" or (frame is not None and held_out(frame)) == (part == "check")


def ic15_layouts(part: str = "all") -> list[list[tuple[int, list[list[float]]]]]:
    """ICDAR 2015 TRAIN frames as lists of (index into ``read_manifest("train/words")``, quadrilateral).

    ``../shared/train`` has the frames' word crops and where each was cut from, not the frames. ``part`` is
    ``fit`` (four frames in five: the detector may train on them), ``check`` (the fifth, held out by a hash of the
    frame's name, to choose settings and checkpoints with) or ``all``.
    """
    frames: dict[str, list[tuple[int, list[list[float]]]]] = {}
    for i, rec in enumerate(read_manifest("train/words")):
        name, poly = rec.get("source_image"), rec.get("source_poly")
        if not name or not poly or not in_part(name, part):
            continue
        xs, ys = [p[0] for p in poly], [p[1] for p in poly]
        if max(xs) - min(xs) >= 2 and max(ys) - min(ys) >= 2:
            frames.setdefault(name, []).append((i, poly))
    return [frames[k] for k in sorted(frames)]


def line_crops(folder: str = "train/receipts_sroie", pad: float = 0.2,
               keep: Callable[[dict[str, Any]], bool] | None = None) -> list[tuple[np.ndarray, str]]:
    """Crops of every labelled box of a page set (SROIE lines), with some context, as grayscale arrays."""
    out = []
    for it in read_manifest(folder):
        if keep is not None and not keep(it):
            continue
        gray = to_gray(load_rgb(it["path"]))
        h, w = gray.shape
        for word in it["words"]:
            text = sanitize(word["text"]).strip()
            x0, y0, x1, y1 = word["box"]
            if word.get("ignore") or not text or y1 - y0 < 4 or x1 - x0 < 4:
                continue
            p = pad * (y1 - y0)
            crop = gray[max(0, int(y0 - p)): min(h, int(y1 + p) + 1), max(0, int(x0 - p)): min(w, int(x1 + p) + 1)]
            out.append((crop.copy(), text))
    return out


def borndigital_words(part: str) -> list[tuple[np.ndarray, str]]:
    """ICDAR 2013 born-digital TRAIN words: ``fit`` (four in five images) to train on, ``check`` to choose with.

    The recognizer never trains on ``check``, so it is real text no checkpoint has seen, and not an eval set.
    Check crops identical to a fit crop are left out.
    """
    fit = line_crops("train/borndigital_ic13", pad=0.1, keep=lambda it: not held_out(it["image"]))
    if part == "fit":
        return fit
    seen = {g.tobytes() for g, _ in fit}  # the same logo or banner recurs across images
    check = line_crops("train/borndigital_ic13", pad=0.1, keep=lambda it: held_out(it["image"]))
    return [(g, t) for g, t in check if g.tobytes() not in seen]


def cached(name: str, build: Callable[[], Any], cache_dir: Path = REPO / "runs" / "cache") -> Any:
    """Build once and keep a pickle under runs/cache (ignored by git)."""
    tag = hashlib.sha1(str(shared_dir()).encode()).hexdigest()[:8]  # a packed copy gets its own cache
    path = cache_dir / f"{name}-{tag}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            return pickle.load(f)
    data = build()
    cache_dir.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
    return data
