"""Tesseract's TSV table: the same columns and levels Tesseract writes, the answer's words and boxes in its rows."""

import csv
import io
import shutil
import subprocess

import pytest

from serve_app import tsv
from serve_app.corrections import as_corrected
from training.synth import render_lines

from .test_alto import answer
from .test_layout import two_columns


def table(text: str) -> list[dict[str, str]]:
    """Read as a TSV reader without quoting reads it (pandas with ``quoting=csv.QUOTE_NONE``, pytesseract)."""
    assert text.endswith("\n")
    rows = list(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert all(len(row) == len(tsv.COLUMNS) for row in rows), [r for r in rows if len(r) != len(tsv.COLUMNS)]
    assert tuple(rows[0]) == tsv.COLUMNS
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_a_row_for_the_page_its_block_paragraph_lines_and_words():
    body = answer()
    rows = table(tsv.to_tsv(body))
    assert [r["level"] for r in rows] == ["1", "2", "3", "4", "5", "5", "5", "4", "5", "5"]
    assert [rows[0][k] for k in ("left", "top", "width", "height", "conf")] == ["0", "0", "640", "200", "-1"]
    words = [r for r in rows if r["level"] == "5"]
    assert [r["text"] for r in words] == [w["text"] for ln in body["lines"] for w in ln["words"]]
    assert [(r["line_num"], r["word_num"]) for r in words] == [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1"),
                                                               ("2", "2")]
    assert [words[0][k] for k in ("left", "top", "width", "height")] == ["10", "20", "80", "30"]
    assert float(words[1]["conf"]) == pytest.approx(90.0)
    line = rows[3]
    assert [line[k] for k in ("line_num", "word_num", "left", "width", "conf", "text")] == ["1", "0", "10", "290",
                                                                                           "-1", ""]
    assert {r["block_num"] for r in rows[1:]} == {"1"} and {r["par_num"] for r in rows[2:]} == {"1"}


def test_pages_of_one_upload_are_one_table_and_a_page_without_text_is_one_row():
    empty = {**answer(page=2), "lines": [], "text": ""}
    rows = table(tsv.document([answer(page=1), empty]))
    assert [r["page_num"] for r in rows if r["level"] == "1"] == ["1", "2"]
    assert rows[-1]["level"] == "1" and rows[-1]["page_num"] == "2"


def test_a_corrected_line_is_one_word_and_a_tab_in_it_cannot_split_the_row():
    fixed = as_corrected(answer(), ["Total\tdue\n38.95", "Thank you"])
    words = [r for r in table(tsv.to_tsv(fixed)) if r["level"] == "5"]
    assert [r["text"] for r in words] == ["Total due 38.95", "Thank", "you"]
    assert [words[0][k] for k in ("left", "width")] == ["10", "290"]  # over the whole line


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="Tesseract is not installed (scripts/setup.sh does)")
def test_tesseract_writes_the_same_columns_and_levels_for_the_same_page(tmp_path):
    img, truth = render_lines(["Invoice number 4521", "Total due 38.90"], size=28)
    img.save(tmp_path / "page.png")
    theirs = subprocess.run(["tesseract", str(tmp_path / "page.png"), "stdout", "tsv"], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    their_rows = table(theirs if theirs.endswith("\n") else theirs + "\n")
    words = [[{"box": list(t.box), "text": t.text, "confidence": 0.9}] for t in truth]  # each line one word
    ours = {"image": {"width": img.width, "height": img.height, "page": 1},
            "lines": [{"box": w[0]["box"], "words": w} for w in words]}
    our_rows = table(tsv.to_tsv(ours))
    assert [r["level"] for r in our_rows][:4] == [r["level"] for r in their_rows][:4] == ["1", "2", "3", "4"]
    assert their_rows[0] == our_rows[0]  # the page row, to the character
    for mine, theirs_row in zip(our_rows[1:4], their_rows[1:4]):  # block, paragraph, first line: numbered alike
        assert [mine[k] for k in tsv.COLUMNS[:6]] == [theirs_row[k] for k in tsv.COLUMNS[:6]]


def test_each_block_of_text_is_numbered_and_its_lines_from_one_as_tesseract_numbers_them():
    rows = table(tsv.to_tsv(two_columns()))
    words = [(r["block_num"], r["par_num"], r["line_num"], r["text"]) for r in rows if r["level"] == "5"]
    assert words == [("1", "1", "1", "Left1"), ("1", "1", "2", "Left2"), ("2", "1", "1", "Right1"),
                     ("2", "1", "2", "Right2")]
    assert [(r["left"], r["width"]) for r in rows if r["level"] == "2"] == [("10", "290"), ("340", "300")]
