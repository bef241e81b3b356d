"""Benchmarks: scripts that print numbers (timings, sizes, accuracy), never tests."""

from __future__ import annotations

import argparse


def over_http(doc: str | None, images: int) -> argparse.ArgumentParser:
    """Options of a benchmark that reads the first ``images`` of eval sets through a running service."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--sets", nargs="+", default=["docs_dev", "scenes_dev"])
    p.add_argument("--images", type=int, default=images, help="the first N of each set")
    return p
