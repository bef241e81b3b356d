"""Reading many files with the command line: which files, where each one's outputs go, and which are done.

A batch of thousands of scans must survive an interruption and must not write one file's output over another's.
So a folder named on the command line is read whole (the images and PDFs under it, in sorted order); each file's
outputs go under each output folder at the file's path relative to the deepest folder holding every input, so that
``2024/01/page1.jpg`` and ``2024/02/page1.jpg`` keep two outputs (flat inputs keep ``DIR/<file name>.<ext>``); an
output is written whole or not at all (a temporary file, then a rename) as soon as its file is read; and with
``--skip-done`` a file whose every output is there already is not sent again (`serve_app.client`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from serve_app import alto, hocr, searchable_pdf, tsv
from serve_app.documents import pages_text

#: What a folder is searched for: the suffixes of the formats the service reads (`serve_app.imaging.ACCEPTED`).
#: Files named one by one are sent whatever their name: the service judges a file by its bytes.
READ_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".heic", ".heif", ".avif", ".bmp",
                           ".tif", ".tiff", ".pdf"})

#: Output formats, in the order they are written, and the suffix each adds to its file's name.
SUFFIXES = {"text": ".txt", "hocr": ".hocr", "alto": ".xml", "tsv": ".tsv", "pdf": ".pdf"}

#: The file name that stands for standard input (``convert scan.pdf png:- | python -m serve_app.client -``); a file
#: of that name is ``./-``. Its outputs are named `STDIN_NAME` (``DIR/stdin.txt``), as Tesseract names them.
STDIN = Path("-")
STDIN_NAME = Path("stdin")

T = TypeVar("T")


def collect(paths: Iterable[Path], outputs: Iterable[Path] = ()) -> list[Path]:
    """The files to read: each path given that is a file, the readable files under each folder given; each once.

    A folder is walked in sorted order, skipping hidden entries and anything under an output folder (``--pdf
    scans/ocr`` beside ``scans/``: a second run must not read the first one's PDFs as scans).
    """
    skip = [Path(os.path.abspath(p)) for p in outputs]
    found: list[Path] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path if path == STDIN else Path(os.path.abspath(path))  # ./- is a file: its key is absolute
        if key not in seen:
            seen.add(key)
            found.append(path)

    for path in paths:
        if path == STDIN or not path.is_dir():
            add(path)  # a missing file too: it is reported as unreadable, in its place
            continue
        walked = []
        for root, dirs, names in os.walk(path):
            here = Path(os.path.abspath(root))
            dirs[:] = [d for d in dirs if not d.startswith(".") and here / d not in skip]
            walked += [Path(root) / n for n in names if not n.startswith(".") and readable(n)]
        for file in sorted(walked, key=lambda f: f.parts):  # by path: a/x.png before b.png
            add(file)
    return found


def plan(paths: Iterable[Path], folders: dict[str, Path]) -> list[tuple[Path, dict[str, Path]]]:
    """Each file to read (`collect`) with where its outputs go (`targets`), in order.

    A file found in a folder that is another found file's output is left out: with ``--pdf`` naming the folder
    read (``client scans/ --pdf scans/``), a second run found ``scans/a.jpg.pdf`` beside ``scans/a.jpg`` and read
    it as a scan (writing ``a.jpg.pdf.pdf``, read by the third run, and so on). A file named on its own is read
    whatever it is.
    """
    paths = list(paths)
    named = {Path(os.path.abspath(p)) for p in paths if p != STDIN and not p.is_dir()}
    files = collect(paths, folders.values())
    while True:  # leaving a file out can move the folder every input shares, and with it the outputs' names
        outputs = [targets(name, folders) for name in relative_names(files)]
        written = {Path(os.path.abspath(t)) for out in outputs for t in out.values()}
        kept = [f for f in files if f == STDIN or Path(os.path.abspath(f)) in named
                or Path(os.path.abspath(f)) not in written]
        if len(kept) == len(files):
            return list(zip(files, outputs, strict=True))
        files = kept


def readable(name: str) -> bool:
    return Path(name).suffix.lower() in READ_SUFFIXES


def relative_names(files: list[Path]) -> list[Path]:
    """Each file's path under an output folder: relative to the deepest folder holding every file.

    Symbolic links are not followed (a linked file keeps the name it has where it was found).
    """
    absolute = [Path(os.path.abspath(f)) for f in files if f != STDIN]
    common = Path(os.path.commonpath([a.parent for a in absolute])) if absolute else Path()
    names = iter(a.relative_to(common) for a in absolute)
    return [STDIN_NAME if f == STDIN else next(names) for f in files]


def targets(name: Path, folders: dict[str, Path]) -> dict[str, Path]:
    """Where each output of the file ``name`` (`relative_names`) goes: ``folder/name<suffix>`` per format asked."""
    return {fmt: folders[fmt] / name.parent / f"{name.name}{SUFFIXES[fmt]}" for fmt in SUFFIXES if fmt in folders}


def done(paths: dict[str, Path]) -> bool:
    """Whether every output is there (each was written whole or not at all, so being there means complete)."""
    return bool(paths) and all(p.is_file() for p in paths.values())


def render(fmt: str, pages: list[dict[str, Any]], upload: bytes, name: str) -> bytes | str:
    """One file's pages read (the service's JSON answers, in page order) as one document of ``fmt``."""
    if fmt == "text":  # every page ended by a form feed, as the service's ?pages=&format=text and Tesseract's txt
        return pages_text(pages)
    if fmt == "hocr":
        return hocr.document(pages, name, name)
    if fmt == "alto":
        return alto.document(pages, name)
    if fmt == "tsv":
        return tsv.document(pages)
    if fmt == "pdf":  # the client lays the words over the pages itself: each page is still sent back once, as JSON
        return searchable_pdf.from_upload(pages, upload, name)
    raise ValueError(f"no output format {fmt!r}")


def write_whole(path: Path, content: bytes | str) -> None:
    """``content`` at ``path``, or nothing there at all: written beside it under a temporary name, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(paths: dict[str, Path], pages: list[dict[str, Any]], upload: bytes, name: str) -> None:
    """Every output of one file read, each written whole (`write_whole`)."""
    for fmt, path in paths.items():
        write_whole(path, render(fmt, pages, upload, name))


class InOrder(Generic[T]):
    """Hands items on in the order of their numbers, however they finish: the command line prints files as given.

    A number's items may come one by one (`add`, then `close`): the head's are handed on as they come (a long PDF's
    pages as they are read), the others wait until every number before theirs is closed.
    """

    def __init__(self, emit: Callable[[T], None]) -> None:
        self.emit = emit
        self.waiting: dict[int, list[T]] = {}
        self.closed: set[int] = set()
        self.next = 0

    def add(self, number: int, item: T) -> None:
        """An item of ``number``; more may follow until it is closed."""
        if number == self.next:
            self.emit(item)
        else:
            self.waiting.setdefault(number, []).append(item)

    def close(self, number: int) -> None:
        """``number`` has no more items: the numbers after it, and what waits of them, are handed on."""
        self.closed.add(number)
        while self.next in self.closed:
            self.closed.remove(self.next)
            self.next += 1
            for item in self.waiting.pop(self.next, []):
                self.emit(item)

    def put(self, number: int, item: T) -> None:
        """The one item of ``number``."""
        self.add(number, item)
        self.close(number)
