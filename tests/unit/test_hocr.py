"""hOCR from an answer: well-formed XHTML with the answer's lines, words, boxes and confidences."""

import xml.etree.ElementTree as ET

from serve_app.corrections import as_corrected
from serve_app.hocr import document, to_hocr
from serve_app.schemas import OCRResponse

from .test_layout import two_columns

NS = {"h": "http://www.w3.org/1999/xhtml"}


def answer(rotation: int = 0, dpi: float | None = None) -> dict:
    words = [{"box": [10, 20, 58.6, 44], "text": "Fish", "confidence": 0.97},
             {"box": [66, 20, 140, 44.4], "text": "<&> chips", "confidence": 0.514}]
    body = {
        "request_id": "9b1c6a52-7d4e-4a39-9d0a-0c4cf0e4b1f2",
        "image": {"width": 400, "height": 300, "format": "PNG", "page": 2, "pages": 3, "dpi": dpi,
                  "rotation": rotation},
        "lines": [{"box": [10, 20, 140, 44.4], "poly": [[10, 20], [140, 20], [140, 44.4], [10, 44.4]],
                   "text": "Fish <&> chips", "confidence": 0.8, "words": words},
                  {"box": [10, 60, 90, 80], "poly": [[10, 60], [90, 60], [90, 80], [10, 80]], "text": "4.50",
                   "confidence": 0.99, "words": [{"box": [10, 60, 90, 80], "text": "4.50", "confidence": 0.99}]}],
        "text": "Fish <&> chips\n4.50", "timings": {"decode_ms": 1, "detect_ms": 2, "recognize_ms": 3, "total_ms": 6},
        "models": {"detector": "ctpn@abc", "recognizer": "crnn@def"},
    }
    return OCRResponse.model_validate(body).model_dump()


def props(el: ET.Element) -> dict[str, str]:
    return dict(p.strip().split(" ", 1) for p in el.get("title", "").split(";") if p.strip())


def parse(text: str) -> ET.Element:
    return ET.fromstring(text.encode())  # raises on anything not well-formed


def test_lines_and_words_keep_their_text_boxes_and_confidences():
    body = answer()
    root = parse(to_hocr(body))
    (page,) = root.findall(".//h:div[@class='ocr_page']", NS)
    assert props(page)["bbox"] == "0 0 400 300" and props(page)["ppageno"] == "1"
    assert "scan_res" not in props(page)  # unknown for a photo
    (par,) = page.findall("h:div[@class='ocr_carea']/h:p[@class='ocr_par']", NS)
    assert props(par)["bbox"] == "10 20 140 80"  # all lines: the service does not find paragraphs
    lines = par.findall("h:span[@class='ocr_line']", NS)
    assert len(lines) == len(body["lines"])
    for line, expected in zip(lines, body["lines"], strict=True):
        words = line.findall("h:span[@class='ocrx_word']", NS)
        assert [w.text for w in words] == [w["text"] for w in expected["words"]]
        boxes = [" ".join(str(round(v)) for v in w["box"]) for w in expected["words"]]
        assert [props(w)["bbox"] for w in words] == boxes
        assert [int(props(w)["x_wconf"]) for w in words] == [round(100 * w["confidence"]) for w in expected["words"]]
        assert "textangle" not in props(line)
    assert len({el.get("id") for el in root.iter() if el.get("id")}) == 1 + 2 + 2 + 3  # ids are unique


def test_the_system_and_page_count_are_declared():
    root = parse(to_hocr(answer()))
    meta = {m.get("name"): m.get("content") for m in root.findall(".//h:meta", NS) if m.get("name")}
    assert meta["ocr-system"].startswith("show-off-ocr ") and meta["ocr-number-of-pages"] == "1"  # in this document
    assert set(meta["ocr-capabilities"].split()) == {"ocr_page", "ocr_carea", "ocr_par", "ocr_line", "ocrx_word"}


def test_a_turned_page_keeps_the_upload_size_and_says_the_turn_and_a_pdf_its_resolution():
    root = parse(to_hocr(answer(rotation=90, dpi=200.0)))
    page = root.find(".//h:div[@class='ocr_page']", NS)
    assert props(page)["bbox"] == "0 0 400 300"  # the answer's size and boxes are the upload's, as it lies
    assert props(page)["scan_res"] == "200 200"
    assert {props(line)["textangle"] for line in root.findall(".//h:span[@class='ocr_line']", NS)} == {"90"}


def test_an_empty_page_is_still_a_page():
    body = answer()
    body.update(lines=[], text="")
    page = parse(to_hocr(body)).find(".//h:div[@class='ocr_page']", NS)
    assert page is not None and list(page) == []


def test_the_pages_of_one_upload_make_one_document_with_unique_ids():
    first, second = answer(), answer()
    first["image"]["page"], second["image"]["page"] = 1, 2
    root = parse(document([first, second], title="bill.pdf", image_name='my "bill".pdf'))
    pages = root.findall(".//h:div[@class='ocr_page']", NS)
    assert [props(p)["ppageno"] for p in pages] == ["0", "1"]
    assert props(pages[0])["image"] == "\"my 'bill'.pdf\""  # quotes inside the name cannot end the property
    assert root.find(".//h:title", NS).text == "bill.pdf"
    meta = {m.get("name"): m.get("content") for m in root.findall(".//h:meta", NS) if m.get("name")}
    assert meta["ocr-number-of-pages"] == "2"
    ids = [el.get("id") for el in root.iter() if el.get("id")]
    assert len(ids) == len(set(ids)) == 2 * (1 + 2 + 2 + 3)


def test_each_block_of_text_is_an_area_and_paragraph_of_its_own():
    root = ET.fromstring(to_hocr(two_columns()))
    areas = root.findall(".//h:div[@class='ocr_carea']", NS)
    assert [a.get("id") for a in areas] == ["block_1_1", "block_1_2"]
    assert [props(a)["bbox"] for a in areas] == ["10 0 300 48", "340 0 640 48"]
    assert [[w.text for w in a.iterfind(".//h:span[@class='ocrx_word']", NS)] for a in areas] == \
        [["Left1", "Left2"], ["Right1", "Right2"]]
    assert [ln.get("id") for ln in root.iterfind(".//h:span[@class='ocr_line']", NS)] == \
        ["line_1_1", "line_1_2", "line_1_3", "line_1_4"]  # the answer's line numbers, across blocks


def test_a_correction_or_file_name_with_a_control_character_still_makes_a_readable_document():
    """Stored hOCR lays corrections over their lines, and a file name is the user's: XML cannot hold \\x01 at all."""
    fixed = as_corrected(answer(), ["Fish\x01 & <chips>", "4.50"])
    root = ET.fromstring(document([fixed], image_name="scan\x07.png"))  # parses
    page = root.find(".//h:div[@class='ocr_page']", NS)
    assert page.get("title").startswith('image "scan\ufffd.png"')
    first = root.find(".//h:span[@class='ocr_line']", NS)
    assert [w.text for w in first] == ["Fish\ufffd & <chips>"]


def test_a_sloping_line_says_its_baseline_as_tesseract_does():
    """OCRmyPDF lays a line's text along its ``baseline``: without it, a tilted sign's words were laid flat."""
    body = answer()
    body["lines"][0]["poly"] = [[10, 20], [140, 33], [140, 58], [10, 45]]  # sloping 0.1, 25 px high
    body["lines"][0]["box"] = [10, 20, 140, 58]
    lines = parse(to_hocr(body)).findall(".//h:span[@class='ocr_line']", NS)
    slope, offset = (float(v) for v in props(lines[0])["baseline"].split())
    assert slope == 0.1 and offset == round(45 - 0.2 * 25 - 58)  # from the box's bottom left: its descenders above
    assert "baseline" not in props(lines[1])  # level: as it was
    turned = answer(rotation=90)
    turned["lines"][0]["poly"] = body["lines"][0]["poly"]
    assert "baseline" not in props(parse(to_hocr(turned)).findall(".//h:span[@class='ocr_line']", NS)[0])
