"""The comparison benchmark's pure parts (Tesseract TSV, ignore rule, tables) and the real tesseract binary."""

import shutil

import pytest

from benchmarks.compare import page_counts, parse_tesseract_tsv, ratios, summary_table, tesseract_engine
from training.synth import render_lines

HEADER = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
TSV = "\n".join([
    HEADER,
    "1\t1\t0\t0\t0\t0\t0\t0\t640\t480\t-1\t",
    "4\t1\t1\t1\t1\t0\t10\t20\t200\t30\t-1\t",
    "5\t1\t1\t1\t1\t1\t10\t20\t50\t30\t96.5\tHello",
    "5\t1\t1\t1\t1\t2\t70\t22\t60\t28\t91\tworld,",
    "5\t1\t1\t1\t1\t3\t140\t20\t10\t30\t-1\tnoise",  # conf -1: not a word
    "5\t1\t1\t1\t1\t4\t160\t20\t10\t30\t45\t ",  # blank text
    "5\t1\t1\t1\t1\t5\t180\t20\t20\t30\t0\tx\"y",  # a quote must not confuse the parser
])


def test_tsv_keeps_word_rows_with_boxes():
    assert parse_tesseract_tsv(TSV) == [
        ("Hello", (10.0, 20.0, 60.0, 50.0)), ("world,", (70.0, 22.0, 130.0, 50.0)), ('x"y', (180.0, 20.0, 200.0, 50.0)),
    ]
    assert parse_tesseract_tsv("") == [] and parse_tesseract_tsv(HEADER + "\n") == []


def test_page_counts_skip_predictions_centred_in_ignored_regions():
    truth = [{"text": "Hello", "box": [0, 0, 100, 50]}, {"text": "###", "box": [200, 0, 300, 50], "ignore": True}]
    inside = ("junk", (210.0, 10.0, 290.0, 40.0))
    overlapping = ("more", (150.0, 10.0, 240.0, 40.0))  # centre at x=195: outside the ignored box
    assert page_counts([("HELLO!", (0.0, 0.0, 90.0, 50.0)), inside], truth) == (1, 1, 1)
    assert page_counts([("hello", (0.0, 0.0, 90.0, 50.0)), overlapping], truth) == (1, 2, 1)


def _row(s, f1, sec, **extra):
    return {"set": s, "n": 3, "f1": f1, "precision": f1, "recall": f1, "s_median": sec, "s_p90": sec, **extra}


def test_summary_table_ratios_against_tesseract_of_the_same_run():
    results = {
        "service": {"scenes_dev": _row("scenes_dev", 0.5, 1.8), "docs_dev": _row("docs_dev", 0.7, 2.6),
                    "words_dev": {"set": "words_dev", "n": 3, "accuracy": 0.75, "cer": 0.1, "s_median": 0.01,
                                  "s_p90": 0.02}},
        "tesseract": {"scenes_dev": _row("scenes_dev", 0.2, 1.0), "docs_dev": _row("docs_dev", 0.8, 2.0),
                      "words_dev": {"set": "words_dev", "n": 3, "accuracy": 0.5, "cer": 0.3, "s_median": 0.1,
                                    "s_p90": 0.2, "note": "process start included"}},
        "easyocr": {"scenes_dev": _row("scenes_dev", 0.4, 4.0)},
    }
    rel = ratios(results)
    assert rel["service"] == pytest.approx({"scenes_dev": 1.8, "docs_dev": 1.3})
    assert rel["tesseract"] == pytest.approx({"scenes_dev": 1.0, "docs_dev": 1.0}) and rel["easyocr"] == {
        "scenes_dev": pytest.approx(4.0)}
    lines = summary_table(results).splitlines()
    assert lines[0] == ("| engine | scenes_dev F1 | scenes s/image | words_dev accuracy | docs_dev F1 | docs s/image "
                        "| s/image vs Tesseract |")
    assert lines[2] == "| service | 0.500 | 1.800 | 0.750 | 0.700 | 2.600 | 1.8x / 1.3x |"
    assert lines[3] == "| tesseract | 0.200 | 1.000 | 0.500 | 0.800 | 2.000 | 1.0x / 1.0x |"
    assert lines[4] == "| easyocr | 0.400 | 4.000 | – | – | – | 4.0x / – |"
    assert ratios({"service": results["service"]}) == {"service": {}}  # no Tesseract in the run: no ratio


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
def test_real_tesseract_reads_a_rendered_line(tmp_path):
    img, _ = render_lines(["HELLO WORLD 42"], size=40)
    path = tmp_path / "line.png"
    img.save(path)
    engine = tesseract_engine(threads=2)
    words = engine.page(str(path))
    assert [t for t, _ in words] == ["HELLO", "WORLD", "42"]
    w, h = img.size
    assert all(0 <= b[0] < b[2] <= w and 0 <= b[1] < b[3] <= h for _, b in words)
    assert words[0][1][0] < words[1][1][0] < words[2][1][0]  # boxes left to right
    crop = tmp_path / "crop.png"
    img.crop((int(words[1][1][0]) - 8, int(words[1][1][1]) - 8, int(words[1][1][2]) + 8, int(words[1][1][3]) + 8)
             ).save(crop)
    assert engine.word(str(crop)) == "WORLD"
