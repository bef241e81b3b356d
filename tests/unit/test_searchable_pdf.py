"""Searchable PDFs from an answer, read back by PDFium (Chromium's PDF engine): the words copy as they were read,
each selection lies on its word, and the page shows the upload as it was read."""

import ctypes
import io

import numpy as np
import pypdf
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from PIL import Image, ImageCms

from serve_app import searchable_pdf
from serve_app.corrections import as_corrected
from serve_app.imaging import decode_image
from serve_app.layout import turned_box
from serve_app.searchable_pdf import document, page_image, resolution, to_pdf
from training.pdfs import text_pdf
from training.synth import render_lines

W, H = 1200, 800

#: Two lines of words, as read upright; turned with the page below.
UPRIGHT = [[("Total", [100, 200, 260, 250]), ("due:", [268, 200, 390, 250]), ("38.90", [400, 200, 560, 250])],
           [("Thank", [100, 300, 260, 350]), ("you", [260, 300, 360, 350])]]  # abutting, as the recognizer splits


def turn_box(box: list[float], rotation: int) -> list[float]:
    """A box on the upright page, where it lies on the upload, which must be turned ``rotation`` clockwise."""
    x0, y0, x1, y1 = box
    if rotation == 0:
        return [x0, y0, x1, y1]
    if rotation == 90:  # the upload is the page turned counter-clockwise: (x, y) -> (y, W - x)
        return [y0, W - x1, y1, W - x0]
    if rotation == 180:
        return [W - x1, H - y1, W - x0, H - y0]
    return [H - y1, x0, H - y0, x1]  # 270


def answer(rotation: int = 0, lines=UPRIGHT, dpi: float | None = None, fmt: str = "PNG") -> dict:
    width, height = (W, H) if rotation in (0, 180) else (H, W)
    return {"request_id": "r-1", "image": {"width": width, "height": height, "format": fmt, "page": 1, "pages": 1,
                                           "dpi": dpi, "rotation": rotation},
            "lines": [{"words": [{"text": t, "box": turn_box(b, rotation), "confidence": 0.9} for t, b in line]}
                      for line in lines]}


def white(body: dict) -> np.ndarray:
    return np.full((body["image"]["height"], body["image"]["width"], 3), 255, np.uint8)


def words_and_boxes(pdf: bytes, dpi: float = searchable_pdf.DEFAULT_DPI) -> tuple[str, list]:
    """The page's text as PDFium copies it, and each word's characters' union box in the page's pixels."""
    page = pdfium.PdfDocument(pdf)[0]
    width, height = (round(v * dpi / 72) for v in page.get_size())  # as the page is shown, its /Rotate applied

    def shown(x: float, y: float) -> tuple[float, float]:  # from the page's own space, as PDFium draws it
        dx, dy = ctypes.c_int(), ctypes.c_int()
        pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width * 16, height * 16, 0, x, y, dx, dy)
        return dx.value / 16, dy.value / 16  # (whole device pixels: drawn 16 times as large)

    text = page.get_textpage()
    found, word, box = [], "", None
    for i in range(text.count_chars()):
        ch = text.get_text_range(i, 1)
        if ch.isspace():
            if word:
                found.append((word, box))
            word, box = "", None
            continue
        left, bottom, right, top = text.get_charbox(i, loose=True)
        (x0, y0), (x1, y1) = shown(left, bottom), shown(right, top)
        b = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        box = b if box is None else [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])]
        word += ch
    if word:
        found.append((word, box))
    return text.get_text_range(), found


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_the_page_is_shown_as_read_and_each_selection_lies_on_its_word(rotation):
    """Read turned, the page is turned as it was read: upright, its words copied in reading order."""
    body = answer(rotation)
    pdf = to_pdf(body, b"", white(body))
    assert pdfium.PdfDocument(pdf)[0].get_size() == pytest.approx((W * 72 / 300, H * 72 / 300))  # upright
    copied, found = words_and_boxes(pdf)
    assert copied.split() == ["Total", "due:", "38.90", "Thank", "you"]
    assert "Thankyou" not in copied.replace("\r\n", " ")  # the abutting words still copy apart
    expected = [w for line in UPRIGHT for w in line]
    for (text, got), (want, box) in zip(found, expected, strict=True):
        assert text == want
        # within a fifth of the text's height of the word's box on every side (the font's ascent is not the box's)
        assert np.abs(np.array(got) - np.array(box)).max() < 0.2 * (box[3] - box[1]), (text, got, box)


@pytest.mark.parametrize("rotation", [0, 90])
def test_another_reader_finds_the_same_words_in_a_well_formed_file(rotation):
    """pypdf, strict: every object where the cross-reference table says, and the words in reading order."""
    body = answer(rotation)
    reader = pypdf.PdfReader(io.BytesIO(to_pdf(body, b"", white(body))), strict=True)
    assert len(reader.pages) == 1 and reader.pages[0].extract_text().split() == ["Total", "due:", "38.90", "Thank",
                                                                                "you"]


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_page_read_turned_is_drawn_turned(rotation):
    upload = marked().rotate(rotation, expand=True)  # counter-clockwise: read with the same turn clockwise
    body = answer(rotation, lines=[])
    body["image"].update(width=upload.width, height=upload.height)
    page = rendered(to_pdf(body, b"", np.array(upload)), 300)
    assert page.shape == (200, 300)
    assert page[:50, :50].mean() < 60 and page[150:, 250:].mean() > 200 and page[:50, 250:].mean() > 200


def char_centres(pdf: bytes, dpi: float = searchable_pdf.DEFAULT_DPI) -> list[tuple[str, float, float]]:
    """Each character PDFium finds, with its box's centre in the page's pixels as shown."""
    page = pdfium.PdfDocument(pdf)[0]
    width, height = (round(v * dpi / 72) for v in page.get_size())
    text = page.get_textpage()
    centres = []
    for i in range(text.count_chars()):
        left, bottom, right, top = text.get_charbox(i, loose=True)
        corners = []
        for x, y in ((left, bottom), (right, top)):
            dx, dy = ctypes.c_int(), ctypes.c_int()
            pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width * 16, height * 16, 0, x, y, dx, dy)
            corners.append((dx.value / 16, dy.value / 16))
        (x0, y0), (x1, y1) = corners
        centres.append((text.get_text_range(i, 1), (x0 + x1) / 2, (y0 + y1) / 2))
    return centres


@pytest.mark.parametrize("rotation", [0, 90])
def test_the_words_of_a_tilted_line_are_laid_along_its_slope(rotation):
    """A line photographed at a slope (0.1 here): each letter's selection lies on the line where it is. Laid flat
    over the words' upright boxes, the letters at a long word's ends were half a line off it, one up, one down."""
    def centre(x: float) -> float:  # the line's centre, as read, at x
        return 325 + 0.1 * (x - 100)

    poly = [(100, 300), (700, 360), (700, 410), (100, 350)]  # from the text's top left, clockwise, as read
    words = [("Tilted", [100, 300, 380, 378]), ("receipts", [400, 330, 700, 410])]
    body = answer(rotation, lines=[words])
    to_upload = (lambda x, y: (x, y)) if rotation == 0 else (lambda x, y: (y, W - x))  # as turn_box lays boxes
    body["lines"][0]["poly"] = [list(to_upload(x, y)) for x, y in poly]
    centres = char_centres(to_pdf(body, b"", white(body)))
    letters = [(ch, x, y) for ch, x, y in centres if not ch.isspace()]
    assert "".join(ch for ch, _, _ in letters) == "Tiltedreceipts"
    off = [abs(y - centre(x)) for _, x, y in letters]
    assert max(off) < 0.2 * 50, list(zip(letters, off))  # within a fifth of the line's height, at every letter
    # "receipts" goes down the page with its line, letter by letter
    assert letters[-1][2] - letters[6][2] > 0.08 * (letters[-1][1] - letters[6][1])


def test_a_lone_stretched_word_keeps_its_spaces():
    """A colon read as a word of its own is stretched wide; a space drawn apart from it was dropped by PDFium."""
    lines = [[("TEL", [100, 100, 180, 150]), (":", [210, 100, 260, 150]), ("03-4043", [286, 100, 500, 150])],
             [("NO", [100, 200, 160, 250]), (":", [170, 200, 260, 250])], [("210038-K", [262, 200, 500, 250])]]
    body = answer(lines=lines)
    copied, _ = words_and_boxes(to_pdf(body, b"", white(body)))
    assert copied.split() == ["TEL", ":", "03-4043", "NO", ":", "210038-K"]  # the last two lines share a row


def test_characters_the_font_lacks_become_question_marks():
    body = answer(lines=[[("café", [100, 100, 300, 150]), ("€5", [320, 100, 400, 150])]])
    copied, _ = words_and_boxes(to_pdf(body, b"", white(body)))
    assert copied.split() == ["caf?", "?5"]


def jpeg(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85, **kwargs)
    return buf.getvalue()


def marked(size=(300, 200)) -> Image.Image:
    """White, with a black square in the top left corner."""
    im = Image.new("RGB", size, "white")
    im.paste((0, 0, 0), (0, 0, 60, 60))
    return im


def rendered(pdf: bytes, width: int) -> np.ndarray:
    page = pdfium.PdfDocument(pdf)[0]
    return np.array(page.render(scale=width / page.get_size()[0]).to_pil().convert("L"), dtype=int)


def test_an_upright_jpeg_goes_in_as_it_came():
    data = jpeg(marked())
    decoded = decode_image(data, 2**20, 10**6)
    body = answer(fmt="JPEG")
    body["image"].update(width=300, height=200)
    pdf = to_pdf(body, data, decoded.pixels)
    assert data in pdf  # the same bytes: no second loss
    picture = page_image(data, "JPEG", decoded.pixels, 300, 200)
    assert picture.filter == "DCTDecode" and picture.stream == data


def test_a_turned_jpeg_is_shown_as_it_was_read():
    """EXIF orientation 6: stored sideways, shown (and read) turned; a reader would show the stored pixels."""
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = marked().transpose(Image.Transpose.ROTATE_90)  # 200x300, the square now bottom left
    data = jpeg(stored, exif=exif)
    decoded = decode_image(data, 2**20, 10**6)
    assert decoded.pixels.shape[:2] == (200, 300)  # upright as read
    body = answer(fmt="JPEG")
    body["image"].update(width=300, height=200)
    pdf = to_pdf(body, data, decoded.pixels)
    assert data not in pdf
    page = rendered(pdf, 300)
    assert page[:50, :50].mean() < 60 and page[150:, :50].mean() > 200  # the square top left, as read


def test_lossless_pages_stay_lossless_and_grey_stays_grey():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (200, 300), dtype=np.uint8)
    pixels = np.repeat(grey[..., None], 3, axis=2)
    picture = page_image(b"", "PNG", pixels, 300, 200)
    assert picture.filter == "FlateDecode" and picture.grey and len(picture.stream) < 300 * 200 * 1.1
    body = answer()
    body["image"].update(width=300, height=200, dpi=72)  # a point per pixel: rendered at scale 1
    page = rendered(document([(body, picture, 72.0)]), 300)
    assert np.abs(page - grey.astype(int)).max() <= 1  # noise survives: nothing was lost
    colour = page_image(b"", "PNG", np.dstack([grey, grey, 255 - grey]), 300, 200)
    assert not colour.grey
    photo = page_image(b"", "HEIF", pixels, 300, 200)  # already lossy: JPEG again, not a lossless copy of noise
    assert photo.filter == "DCTDecode"


def test_the_page_is_as_large_as_the_upload_at_its_resolution():
    body = answer(dpi=200)  # a PDF page rendered at 200 dpi: its own size in points
    assert resolution(b"", body) == 200
    page = pdfium.PdfDocument(to_pdf(body, b"", white(body)))[0]
    assert page.get_size() == pytest.approx((W * 72 / 200, H * 72 / 200), abs=0.01)
    scan = io.BytesIO()
    marked().save(scan, "PNG", dpi=(600, 600))
    assert resolution(scan.getvalue(), answer()) == pytest.approx(600, abs=0.01)
    phone = io.BytesIO()
    marked().save(phone, "JPEG", dpi=(72, 72))  # what phones write: a page of 16 inches for a small photo
    assert resolution(phone.getvalue(), answer()) == searchable_pdf.DEFAULT_DPI
    strip = answer()
    strip["image"].update(width=40_000, height=100)  # past 200 inches at 300 dpi: laid out denser
    assert 40_000 * 72 / resolution(b"", strip) <= 14_400


def test_pages_of_one_document_in_order():
    first, second = answer(), answer(lines=[[("Second", [100, 100, 400, 160])]])
    pages = [(a, page_image(b"", "PNG", white(a), W, H), 300.0) for a in (first, second)]
    pdf = pdfium.PdfDocument(document(pages, title="scan.pdf"))
    assert len(pdf) == 2 and pdf.get_metadata_dict()["Title"] == "scan.pdf"
    assert pdf[1].get_textpage().get_text_range().split() == ["Second"]
    assert pdf.get_metadata_dict()["Producer"].startswith("show-off-ocr ")


def test_corrected_lines_are_laid_over_their_boxes_and_uncorrectable_ones_stay_as_read():
    body = answer()
    for line, text in zip(body["lines"], ["Total due: 38.90", "Thank you"]):
        line.update(text=text, box=[min(w["box"][0] for w in line["words"]), min(w["box"][1] for w in line["words"]),
                                    max(w["box"][2] for w in line["words"]), max(w["box"][3] for w in line["words"])])
    fixed = as_corrected(body, ["Total due: 38.95", "Thank you"])
    copied, found = words_and_boxes(to_pdf(fixed, b"", white(fixed)))
    assert copied.split() == ["Total", "due:", "38.95", "Thank", "you"]
    assert found[2][1][2] == pytest.approx(body["lines"][0]["box"][2], abs=0.2 * 50)  # ends where the line ends
    assert fixed["lines"][1] is body["lines"][1]  # unchanged: its words and their boxes as read
    assert as_corrected(body, ["One line for the whole page"]) is body  # where would it go?


SCAN_LINES = ["Invoice 4521 paid", "Thank you"]


def scanned_pdf(rotate: int, rotation: int) -> tuple[bytes, list]:
    """A scan as scanners write it, one JPEG over a page at 150 dpi, with the page's own ``/Rotate``, lying so that
    the page as shown is read turned ``rotation`` clockwise; and where its words are, upright, at 200 dpi."""
    img, truth = render_lines(SCAN_LINES, size=28)
    buf = io.BytesIO()
    img.convert("RGB").rotate((rotate + rotation) % 360, expand=True).save(buf, "PDF", resolution=150)
    doc = pdfium.PdfDocument(buf.getvalue())
    doc[0].set_rotation(rotate)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue(), [[(t, [v * 200 / 150 for v in b]) for t, b in line.words] for line in truth]


def served_answer(pdf: bytes, words: list, rotation: int) -> dict:
    """What the service answers for the scan's page: boxes in the pixels of its rendering at 200 dpi (the page's
    own turn applied), where the text lies there, read turned ``rotation`` clockwise."""
    shown = pdfium.PdfDocument(pdf)[0]
    w, h = round(shown.get_width() * 200 / 72), round(shown.get_height() * 200 / 72)
    uw, uh = (w, h) if rotation in (0, 180) else (h, w)  # the page read upright
    lines = [[(t, turned_box(b, (360 - rotation) % 360, uw, uh)) for t, b in line] for line in words]
    return {"request_id": "r", "image": {"width": w, "height": h, "format": "PDF", "page": 1, "pages": 1, "dpi": 200,
                                         "rotation": rotation},
            "lines": [{"words": [{"text": t, "box": b, "confidence": 0.9} for t, b in line]} for line in lines]}


@pytest.mark.parametrize("rotate,rotation", [(0, 0), (90, 0), (0, 180), (270, 90), (180, 270)])
def test_a_scanned_pdf_keeps_its_own_page_and_gets_the_words_over_it(rotate, rotation):
    """The scan's page whole (its JPEG as it came, its own turn plus the turn it was read at) with the words laid
    over it: shown upright, copied in reading order, each where the page shows it."""
    pdf, words = scanned_pdf(rotate, rotation)
    out = searchable_pdf.over_pdf(pdf, [served_answer(pdf, words, rotation)])
    start = pdf.index(b"\xff\xd8\xff")  # the scan's JPEG, as the PDF holds it (0xFFD9 ends it, and only it)
    assert pdf[start:pdf.index(b"\xff\xd9", start) + 2] in out  # not drawn again
    page = pdfium.PdfDocument(out)[0]
    assert page.get_rotation() == (rotate + rotation) % 360
    copied, found = words_and_boxes(out, dpi=200)
    assert copied.split() == " ".join(SCAN_LINES).split()
    for (text, got), (want, box) in zip(found, [w for line in words for w in line], strict=True):
        assert text == want
        assert np.abs(np.array(got) - np.array(box)).max() < 0.2 * (box[3] - box[1]), (text, got, box)


def test_a_pdf_page_that_holds_text_keeps_its_own_alone():
    """As OCRmyPDF's --skip-text: a second layer would copy every word twice."""
    pdf = text_pdf([["Invoice 4521 paid"], ["Second page"]], size=16, width=360, height=144)
    body = {"image": {"width": 1000, "height": 400, "format": "PDF", "page": 2, "pages": 2, "rotation": 0},
            "lines": [{"words": [{"text": "Misread", "box": [100, 100, 400, 160], "confidence": 0.9}]}]}
    page = pdfium.PdfDocument(searchable_pdf.over_pdf(pdf, [body]))[0]
    assert page.get_textpage().get_text_range().split() == ["Second", "page"]


def test_the_pages_of_a_tiff_become_one_document_each_page_its_own_picture():
    """`from_upload` (the client's --pdf): every page decoded again from the file, in the answers' order."""
    pages = [render_lines([text], size=28)[0].convert("L") for text in ("First page", "Second page")]
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:], dpi=(200, 200))
    answers = [{"request_id": "r", "image": {"width": im.width, "height": im.height, "format": "TIFF", "page": n,
                                             "pages": 2, "dpi": None, "rotation": 0},
                "lines": [{"words": [{"text": t, "box": list(b), "confidence": 0.9} for t, b in truth[0].words]}]}
               for n, (im, truth) in enumerate(((p, render_lines([t], size=28)[1]) for p, t in
                                                zip(pages, ("First page", "Second page"))), start=1)]
    pdf = pdfium.PdfDocument(searchable_pdf.from_upload(answers, buf.getvalue(), "scan.tif"))
    assert [pdf[i].get_textpage().get_text_range().split() for i in range(len(pdf))] == [["First", "page"],
                                                                                          ["Second", "page"]]
    assert pdf[1].get_size() == pytest.approx((pages[1].width * 72 / 200, pages[1].height * 72 / 200), abs=0.1)
    second = rendered(searchable_pdf.from_upload(answers[1:], buf.getvalue()), pages[1].width)
    assert np.abs(second - np.array(pages[1], dtype=int)).mean() < 2  # its own picture, not the first page's


def test_the_files_colour_profile_goes_with_its_picture():
    """A phone's photo is in its own colours (Display P3, say): the profile tells a viewer how to show them."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    photo = io.BytesIO()
    marked().save(photo, "JPEG", icc_profile=srgb)
    body = answer(fmt="JPEG")
    body["image"].update(width=300, height=200)
    pdf = to_pdf(body, photo.getvalue(), decode_image(photo.getvalue(), 2**20, 10**6).pixels)
    (image,) = pypdf.PdfReader(io.BytesIO(pdf), strict=True).pages[0]["/Resources"]["/XObject"].values()
    space = image.get_object()["/ColorSpace"]
    assert space[0] == "/ICCBased" and space[1].get_object().get_data() == srgb
    assert rendered(pdf, 300)[:50, :50].mean() < 60  # still drawn, as it was
    grey = io.BytesIO()
    marked().convert("L").save(grey, "PNG", icc_profile=srgb)  # an RGB profile on grey pixels: not theirs
    pixels = decode_image(grey.getvalue(), 2**20, 10**6).pixels
    assert page_image(grey.getvalue(), "PNG", pixels, 300, 200).icc is None
    assert page_image(b"", "PNG", pixels, 300, 200).icc is None
