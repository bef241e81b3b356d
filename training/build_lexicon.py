"""Build the recognizer's lexicon (`serve_app/assets/lexicon.txt.gz`) from the `english-words` dictionary.

    python -m training.build_lexicon

Only the dictionary goes in. Adding the TRAIN sets' own words (receipt abbreviations such as BHD) moved the dev
scores by under a point and would put benchmark annotations into the repository.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

from serve_app.ocr.models.weights import ASSETS
from serve_app.ocr.processing.lexicon import key
from training.corpus import dictionary


def main(out: Path) -> Path:
    words = {key(w) for w in dictionary() if w.isalpha()} - {""}
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as f:
        f.write("\n".join(sorted(words)) + "\n")
    print(f"wrote {out}: {len(words)} words, {out.stat().st_size / 1e6:.2f} MB")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ASSETS / "lexicon.txt.gz")
    main(p.parse_args().out)
