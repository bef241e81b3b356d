"""Build the recognizer's lexicon (`serve_app/assets/lexicon.txt.gz`): a dictionary plus the words of real text.

    python -m training.build_lexicon

Two sources, both general English, neither from a benchmark:
- the `english-words` dictionary (web2 + GCIDE, 249k words), which is also what the synthetic text is made of;
- `wordfreq`'s English "large" list (alphabetic words seen in Wikipedia, subtitles, news, books and the web), those
  at a Zipf frequency of at least `MIN_ZIPF` (once in 10^7 words or more often). It adds names, brands and
  abbreviations (HDTV, LCD) that signs and receipts print and a dictionary lacks. Its rarest words are mostly
  misspellings and fragments (`everyon`, `specia`, `witr`): a misread that spells one passed as a known word, was
  not corrected and skipped the page lines' stricter bar for unknown words.
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

#: The rarest `wordfreq` words the lexicon takes (Zipf scale: log10 of uses per 10^9 words). Chosen on TRAIN data
#: against the whole list and floors of 1.5 to 3.5 (docs/accuracy.md).
MIN_ZIPF = 2.0


def real_text_words(min_zipf: float = MIN_ZIPF) -> set[str]:
    """Alphabetic ASCII words of wordfreq's English "large" list used at least ``min_zipf`` often."""
    from wordfreq import top_n_list, zipf_frequency

    return {w for w in top_n_list("en", 10**7, wordlist="large")
            if w.isascii() and w.isalpha() and zipf_frequency(w, "en", wordlist="large") >= min_zipf}


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
