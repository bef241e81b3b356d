"""ALTO 4.4 output: the rules of ``alto-4-4.xsd`` a reader relies on, and the answer's words and boxes in it."""

import re
import xml.etree.ElementTree as ET

import pytest

from serve_app import alto
from serve_app.corrections import as_corrected

from .test_layout import two_columns

A = "{http://www.loc.gov/standards/alto/ns-v4#}"
#: Each element's children in the order the schema's sequences allow (each at most once unless repeated below).
ORDER = {
    "alto": ["Description", "Styles", "Tags", "ReadingOrder", "Layout"],
    "Description": ["MeasurementUnit", "sourceImageInformation", "OCRProcessing", "Processing"],
    "sourceImageInformation": ["fileName", "fileIdentifier", "documentIdentifier"],
    "Processing": ["processingCategory", "processingDateTime", "processingAgency", "processingStepDescription",
                   "processingStepSettings", "processingSoftware"],
    "processingSoftware": ["softwareCreator", "softwareName", "softwareVersion", "applicationDescription"],
    "Layout": ["Page"],
    "Page": ["TopMargin", "LeftMargin", "RightMargin", "BottomMargin", "PrintSpace"],
    "PrintSpace": ["Shape", "TextBlock"],
    "TextBlock": ["Shape", "TextLine"],
    "Shape": ["Polygon"],
}
REPEATED = {"OCRProcessing", "Processing", "Page", "TextBlock", "TextLine", "fileIdentifier", "documentIdentifier",
            "processingStepDescription"}
REQUIRED = {"Page": {"ID", "PHYSICAL_IMG_NR"}, "TextBlock": {"ID"}, "String": {"CONTENT"}, "Processing": {"ID"},
            "Polygon": {"POINTS"}}
FLOATS = {"HPOS", "VPOS", "WIDTH", "HEIGHT", "ROTATION", "WC", "PHYSICAL_IMG_NR"}
NCNAME = re.compile(r"^[A-Za-z_][\w.-]*$")


def local(el: ET.Element) -> str:
    assert el.tag.startswith(A), el.tag  # every element in the ALTO 4 namespace
    return el.tag[len(A):]


def assert_valid_alto(xml: str | bytes) -> ET.Element:
    """Parse ``xml`` and check it against the ALTO 4.4 rules for every element the service writes."""
    root = ET.fromstring(xml)
    assert local(root) == "alto" and root.get("SCHEMAVERSION") == "4.4"
    ids: list[str] = []
    refs: list[str] = []
    for el in root.iter():
        name = local(el)
        kids = [local(k) for k in el]
        if name == "TextLine":  # Shape?, (String, SP?)+, HYP?
            pattern = "".join({"Shape": "h", "String": "s", "SP": "p", "HYP": "y"}[k] for k in kids)
            assert re.fullmatch(r"h?(sp?)+y?", pattern), (name, kids)
        elif name in ORDER:
            allowed = ORDER[name]
            positions = [allowed.index(k) for k in kids]  # ValueError: a child the schema does not allow here
            assert positions == sorted(positions), (name, kids)
            assert all(k in REPEATED or kids.count(k) == 1 for k in kids), (name, kids)
        else:
            assert not kids or name == "Polygon", (name, kids)
        assert REQUIRED.get(name, set()) <= set(el.attrib), (name, el.attrib)
        for key, value in el.attrib.items():
            if key in FLOATS:
                float(value)
            if key == "WC":
                assert 0 <= float(value) <= 1
            if key == "CS":
                assert value in ("true", "false")
            if key == "ID":
                assert NCNAME.match(value), value
                ids.append(value)
            if key == "PROCESSING":
                refs.append(value)
    assert len(ids) == len(set(ids)), "IDs must be unique"
    assert set(refs) <= set(ids)
    assert root.find(f"{A}Description/{A}MeasurementUnit").text == "pixel"
    return root


def answer(rotation: int = 0, page: int = 1) -> dict:
    return {
        "request_id": "r1",
        "image": {"width": 640, "height": 200, "format": "PNG", "page": page, "pages": 2, "dpi": None,
                  "rotation": rotation},
        "lines": [
            {"box": [10.4, 20.0, 300.2, 52.6], "text": "Total due: 38.90", "confidence": 0.93,
             "poly": [[10.4, 20.0], [300.2, 24.0], [300.2, 52.6], [10.4, 48.6]],
             "words": [{"box": [10.4, 20.0, 90.0, 50.0], "text": "Total", "confidence": 0.99},
                       {"box": [101.0, 21.0, 180.0, 51.0], "text": "due:", "confidence": 0.9},
                       {"box": [195.0, 22.0, 300.2, 52.6], "text": "38.90", "confidence": 0.87}]},
            {"box": [10.0, 80.0, 200.0, 110.0], "text": "Thank you", "confidence": 0.97,
             "words": [{"box": [10.0, 80.0, 95.0, 110.0], "text": "Thank", "confidence": 0.98},
                       {"box": [100.0, 80.0, 200.0, 110.0], "text": "you", "confidence": 0.96}]},
        ],
        "text": "Total due: 38.90\nThank you",
        "models": {"detector": "ctpn.pt sha256:ab12", "recognizer": "crnn.pt sha256:cd34"},
    }


def test_every_word_with_its_box_and_confidence_in_reading_order():
    body = answer()
    root = assert_valid_alto(alto.to_alto(body))
    page = root.find(f"{A}Layout/{A}Page")
    assert (page.get("WIDTH"), page.get("HEIGHT"), page.get("PHYSICAL_IMG_NR")) == ("640", "200", "1")
    lines = page.findall(f"{A}PrintSpace/{A}TextBlock/{A}TextLine")
    assert [[s.get("CONTENT") for s in ln.findall(f"{A}String")] for ln in lines] == [
        ["Total", "due:", "38.90"], ["Thank", "you"]]
    first = lines[0].find(f"{A}String")
    assert [first.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT", "WC")] == ["10", "20", "80", "30", "0.99"]
    assert [lines[0].get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] == ["10", "20", "290", "33"]
    gaps = [(sp.get("HPOS"), sp.get("WIDTH")) for sp in lines[0].findall(f"{A}SP")]
    assert gaps == [("90", "11"), ("180", "15")]  # from one word's end to the next one's start
    # the tilted line keeps its slant; a line without a polygon (stored data) has no shape
    assert lines[0].find(f"{A}Shape/{A}Polygon").get("POINTS") == "10,20 300,24 300,53 10,49"
    assert lines[1].find(f"{A}Shape") is None
    block = page.find(f"{A}PrintSpace/{A}TextBlock")
    assert [block.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] == ["10", "20", "290", "90"]
    assert block.get("ROTATION") is None
    settings = root.find(f"{A}Description/{A}Processing/{A}processingStepSettings").text
    assert settings == "detector: ctpn.pt sha256:ab12; recognizer: crnn.pt sha256:cd34"


def test_a_page_read_turned_says_so_and_keeps_the_boxes_of_the_upload():
    root = assert_valid_alto(alto.to_alto(answer(rotation=90)))
    block = root.find(f".//{A}TextBlock")
    assert block.get("ROTATION") == "90"  # degrees counter-clockwise, as the text lies in the upload
    assert root.find(f".//{A}String").get("HPOS") == "10"


def test_pages_of_one_upload_are_one_document_and_its_file_is_named():
    root = assert_valid_alto(alto.document([answer(page=1), answer(page=2)], "bill.pdf"))
    assert [p.get("ID") for p in root.iter(f"{A}Page")] == ["page_1", "page_2"]
    assert root.find(f"{A}Description/{A}sourceImageInformation/{A}fileName").text == "bill.pdf"
    assert len(list(root.iter(f"{A}String"))) == 10


def test_a_page_without_text_is_an_empty_print_space():
    body = {**answer(), "lines": [{"box": [0, 0, 5, 5], "text": "", "confidence": 0.0, "words": []}], "text": ""}
    root = assert_valid_alto(alto.to_alto(body))
    space = root.find(f".//{A}PrintSpace")
    assert list(space) == [] and space.get("WIDTH") == "640"


@pytest.mark.parametrize("text", ['<b>"Tom" & Jerry</b>', "tab\there", "bell\x07 and \x1b[0m", "Straße 5 €"])
def test_a_corrected_line_is_one_string_marked_corrected_whatever_it_holds(text):
    body = answer()
    fixed = as_corrected(body, [text, "Thank you"])
    root = assert_valid_alto(alto.to_alto(fixed))  # parses: characters XML cannot hold are replaced
    first, second = root.iter(f"{A}TextLine")
    (string,) = first.findall(f"{A}String")
    assert first.get("CS") == "true" and second.get("CS") is None
    assert string.get("CONTENT") == text.replace("\x07", "\ufffd").replace("\x1b", "\ufffd")
    assert [string.get(k) for k in ("HPOS", "WIDTH")] == ["10", "290"]  # over the whole line
    assert [s.get("CONTENT") for s in second.findall(f"{A}String")] == ["Thank", "you"]


def test_the_rules_catch_what_a_reader_would_reject():
    """The checks above can fail: no unit, an unknown or misplaced element, a line without words, a confidence of 2,
    an ID twice."""
    good = alto.to_alto(answer())
    for bad in (good.replace("<MeasurementUnit>pixel</MeasurementUnit>", ""),
                good.replace("<PrintSpace", "<Illustrations /><PrintSpace"),
                good.replace("<Processing ", "<Processing><processingSoftware/></Processing><Processing "),
                re.sub(r"<String [^>]*/>", "", good, count=3),
                good.replace('WC="0.99"', 'WC="2"'),
                good.replace('ID="line_1_2"', 'ID="line_1_1"')):
        with pytest.raises((AssertionError, ValueError, AttributeError)):
            assert_valid_alto(bad)


def test_each_block_of_text_is_a_text_block_of_its_own():
    root = assert_valid_alto(alto.to_alto(two_columns()))
    blocks = list(root.iter(f"{A}TextBlock"))
    assert [b.get("ID") for b in blocks] == ["block_1_1", "block_1_2"]
    assert [[b.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")] for b in blocks] == [
        ["10", "0", "290", "48"], ["340", "0", "300", "48"]]
    assert [[s.get("CONTENT") for s in b.iter(f"{A}String")] for b in blocks] == [["Left1", "Left2"],
                                                                                  ["Right1", "Right2"]]
