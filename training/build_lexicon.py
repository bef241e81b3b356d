"""Build the recognizer's lexicon (`serve_app/assets/lexicon.txt.gz`): a dictionary plus the words of real text.

    python -m training.build_lexicon

Two sources, both general English, neither from a benchmark:
- the `english-words` dictionary (web2 + GCIDE, 249k words), which is also what the synthetic text is made of;
- `wordfreq`'s English "large" list (289k alphabetic words seen in Wikipedia, subtitles, news, books and the web).
  It adds names, brands and abbreviations (HDTV, LCD) that signs and receipts print and a dictionary lacks.
On held-out ICDAR 2013 born-digital TRAIN words that no recognizer was trained on, the union reads about a
point more than the dictionary alone at the same margin (`python -m training.tune_lexicon`, docs/accuracy.md).

Adding the TRAIN sets' own words (receipt abbreviations such as BHD) moved the dev scores by under a point and
would put benchmark annotations into the repository, so they stay out.
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

from serve_app.ocr.models.weights import ASSETS
from serve_app.ocr.processing.lexicon import key
from training.corpus import dictionary


def real_text_words() -> set[str]:
    """Alphabetic ASCII words of wordfreq's English "large" list (every word it has a frequency for)."""
    from wordfreq import top_n_list

    return {w for w in top_n_list("en", 10**7, wordlist="large") if w.isascii() and w.isalpha()}


SOURCES = ("dictionary", "wordfreq")


def lexicon_words(sources: tuple[str, ...] = SOURCES) -> set[str]:
    """The lexicon's keys (case-folded letters) from the named sources."""
    words: set[str] = set()
    if "dictionary" in sources:
        words |= {key(w) for w in dictionary() if w.isalpha()}
    if "wordfreq" in sources:
        words |= {key(w) for w in real_text_words()}
    words.discard("")
    return words


def main(out: Path) -> Path:
    words = lexicon_words()
    with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as f:
        f.write("\n".join(sorted(words)) + "\n")
    print(f"wrote {out}: {len(words)} words, {out.stat().st_size / 1e6:.2f} MB")
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ASSETS / "lexicon.txt.gz")
    main(p.parse_args().out)
