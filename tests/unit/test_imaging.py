import io
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from serve_app.imaging import (
    CorruptImage,
    EmptyUpload,
    ImageTooLarge,
    NotAnImage,
    PageOutOfRange,
    UnsupportedFormat,
    decode_image,
)
from training.pdfs import text_pdf

MB = 1024 * 1024


def save(im: Image.Image, fmt: str, **kwargs) -> bytes:
    """``im`` in ``fmt``; HEIF (HEIC) with pillow-heif's encoder, which the service does not carry."""
    buf = io.BytesIO()
    if fmt == "HEIF":
        exif = kwargs.pop("exif", None)
        pillow_heif.from_pillow(im).save(buf, format="HEIF", exif=exif.tobytes() if exif else None, **kwargs)
    else:
        im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def encoded(fmt: str, size=(40, 20), mode="RGB") -> bytes:
    return save(Image.new(mode, size, (200, 10, 10) if mode == "RGB" else 128), fmt)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "HEIF", "AVIF"])
def test_accepted_formats_decode_to_rgb(fmt):
    img = decode_image(encoded(fmt), MB, 10_000)
    assert img.pixels.shape == (20, 40, 3) and img.pixels.dtype == np.uint8 and img.format == fmt
    assert np.abs(img.pixels.astype(int).mean(axis=(0, 1)) - (200, 10, 10)).max() < 12  # its colour, lossy or not


def test_grayscale_becomes_rgb():
    assert decode_image(encoded("PNG", mode="L"), MB, 10_000).pixels.shape == (20, 40, 3)


@pytest.mark.parametrize(
    "data,max_bytes,max_pixels,exc,status",
    [
        (b"", MB, 10_000, EmptyUpload, 400),
        (b"hello, I am text", MB, 10_000, NotAnImage, 415),
        (encoded("GIF"), MB, 10_000, UnsupportedFormat, 415),
        (encoded("PNG")[:60], MB, 10_000, CorruptImage, 400),
        (encoded("PNG"), 50, 10_000, ImageTooLarge, 413),
        (encoded("PNG", size=(200, 100)), MB, 10_000, ImageTooLarge, 413),
        (encoded("HEIF", size=(200, 100)), MB, 10_000, ImageTooLarge, 413),  # from the container's header
        (encoded("AVIF", size=(200, 100)), MB, 10_000, ImageTooLarge, 413),
    ],
)
def test_bad_uploads_raise_errors_with_http_status(data, max_bytes, max_pixels, exc, status):
    with pytest.raises(exc) as info:
        decode_image(data, max_bytes, max_pixels)
    assert info.value.status == status and str(info.value)


@pytest.mark.parametrize("fmt,keep,tail", [("JPEG", 3, b"broken"), ("PNG", 8, b"broken"), ("WEBP", 12, b"\xff" * 40),
                                           ("BMP", 14, b""), ("TIFF", 4, b"\x00" * 40), ("HEIF", 40, b""),
                                           ("AVIF", 40, b""), ("HEIF", 300, b"")])
def test_an_upload_that_starts_as_an_accepted_format_but_breaks_at_once_is_corrupt_not_unsupported(fmt, keep, tail):
    """Pillow cannot even identify it, yet its first bytes say what it is: telling that user we do not read PNG
    would send them looking for the wrong fault."""
    with pytest.raises(CorruptImage, match=f"starts as a {fmt} file") as info:
        decode_image(encoded(fmt)[:keep] + tail, MB, 10_000)
    assert info.value.status == 400


@pytest.mark.parametrize("data", [b"PNG, JPEG and TIFF are formats", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)])
def test_text_or_another_riff_file_is_still_not_an_image(data):
    with pytest.raises(NotAnImage):
        decode_image(data, MB, 10_000)


def test_decompression_bomb_is_refused_from_the_header():
    # a 20000 x 20000 PNG of one colour compresses to a few hundred KB but would need 1.2 GB decoded
    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, "PNG")
    with pytest.raises(ImageTooLarge, match="pixels"):
        decode_image(buf.getvalue(), 10 * MB, 40_000_000)


def test_exif_orientation_is_applied():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20)).save(buf, "JPEG", exif=exif)
    assert decode_image(buf.getvalue(), MB, 10_000).pixels.shape == (40, 20, 3)


@pytest.mark.parametrize("fmt", ["JPEG", "HEIF", "AVIF"])
@pytest.mark.parametrize("orientation,corner", [(1, (0, 0)), (6, (0, -1)), (3, (-1, -1)), (8, (-1, 0))])
def test_a_phone_photo_is_turned_as_it_says_once(fmt, orientation, corner):
    """A phone stores a photo as the sensor saw it and says how to turn it: in EXIF for a JPEG, in the container
    (``irot``, ``imir``) for HEIC and AVIF, where the EXIF tag is left informative. Turned twice, or not at all, a
    page comes out sideways and reads as nothing."""
    im = Image.new("RGB", (96, 48), "white")
    im.paste((0, 0, 0), (0, 0, 24, 12))  # a dark top-left corner as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    img = decode_image(save(im, fmt, exif=exif), MB, 10_000)
    upright = (48, 96) if orientation in (6, 8) else (96, 48)
    assert (img.width, img.height) == upright and img.pixels.shape == (upright[1], upright[0], 3)
    dark = np.argwhere(img.pixels.mean(axis=2) < 100)
    at = (img.pixels.shape[0] - 1 if corner[0] else 0, img.pixels.shape[1] - 1 if corner[1] else 0)
    assert np.abs(dark.mean(axis=0) - at).max() < 12, (fmt, orientation, dark.mean(axis=0))


def _pattern(w: int, h: int) -> Image.Image:
    """Smooth gradients, so a reduced decode can be compared with a resized full one."""
    x, y = np.meshgrid(np.linspace(0, 255, w), np.linspace(0, 255, h))
    return Image.fromarray(np.stack([x, y, (x + y) / 2], -1).astype(np.uint8))


@pytest.mark.parametrize(("size", "keep", "decoded"), [
    ((1000, 700), 125, (125, 88)),  # 1/8: the long side stays >= 125
    ((1000, 700), 200, (250, 175)),  # 1/4 (1/8 would be 125 < 200)
    ((1000, 700), 300, (500, 350)),  # 1/2
    ((1000, 700), 500, (500, 350)),
    ((1000, 700), 501, (1000, 700)),  # under twice keep_side: in full
    ((1000, 700), None, (1000, 700)),
])
def test_large_jpegs_decode_reduced_and_say_by_how_much(size, keep, decoded):
    buf = io.BytesIO()
    _pattern(*size).save(buf, "JPEG", quality=95)
    img = decode_image(buf.getvalue(), MB, 10_000_000, keep_side=keep)
    assert img.pixels.shape == (decoded[1], decoded[0], 3)
    assert (img.width, img.height) == size  # answers refer to the upload's pixels
    assert img.scale == pytest.approx((size[0] / decoded[0], size[1] / decoded[1]))
    if keep:
        assert max(img.pixels.shape[:2]) >= keep
    full = np.asarray(_pattern(*size).resize(decoded, Image.BILINEAR), dtype=np.float32)
    assert np.abs(img.pixels.astype(np.float32) - full).mean() < 3  # the same picture, smaller


@pytest.mark.parametrize(("size", "keep_short", "decoded"), [
    ((1000, 4000), 0, (250, 1000)),  # by its long side alone: a quarter (its 16 px text would be 4 px)
    ((1000, 4000), 400, (500, 2000)),  # a strip keeps its short side too: a half
    ((4000, 1000), 400, (1000, 250)),  # a wide strip: its lines run along it, by its long side alone
    ((1000, 4000), 600, (1000, 4000)),  # in full
])
def test_a_tall_strip_decodes_reduced_no_further_than_its_width_allows(size, keep_short, decoded):
    buf = io.BytesIO()
    _pattern(*size).save(buf, "JPEG", quality=95)
    img = decode_image(buf.getvalue(), MB, 10_000_000, keep_side=1000, keep_short=keep_short)
    assert img.pixels.shape == (decoded[1], decoded[0], 3) and (img.width, img.height) == size


def test_a_long_pdf_page_keeps_the_resolution_its_short_side_needs():
    """A web page printed as one long PDF page (8.5 x 40 inches) is rendered wide enough to read its lines."""
    data = text_pdf([["long"]], width=612, height=2880)
    assert decode_image(data, MB, 40_000_000, keep_side=3392).pixels.shape[:2] == (3392, 721)  # 85 dpi
    img = decode_image(data, MB, 40_000_000, keep_side=3392, keep_short=1440)
    assert img.pixels.shape[1] == 1440 and img.dpi == pytest.approx(1440 / 8.5, abs=0.01)
    assert decode_image(data, MB, 40_000_000, keep_side=3392, keep_short=4000).dpi == 200  # never past pdf_dpi


@pytest.mark.parametrize(("size", "max_pixels", "keep", "decoded"), [
    ((1000, 700), 700_000, None, (1000, 700)),  # fits: in full
    ((1000, 700), 699_999, None, (500, 350)),  # one pixel too many: at 1/2, no further
    ((1000, 700), 100_000, None, (250, 175)),  # 1/2 is 175,000: at 1/4
    ((1000, 700), 100_000, 125, (125, 88)),  # keep_side lets it go to 1/8
    ((1000, 700), 11_000, 900, (125, 88)),  # the limit wins over keep_side
    ((4001, 9), 4_000, None, (1001, 3)),  # a thin strip: each side rounded up
])
def test_a_jpeg_past_the_pixel_limit_decodes_as_reduced_as_it_must(size, max_pixels, keep, decoded):
    buf = io.BytesIO()
    _pattern(*size).save(buf, "JPEG", quality=95)
    img = decode_image(buf.getvalue(), MB, max_pixels, keep_side=keep)
    assert img.pixels.shape == (decoded[1], decoded[0], 3)
    assert img.pixels.shape[0] * img.pixels.shape[1] <= max_pixels
    assert (img.width, img.height) == size
    with pytest.raises(ImageTooLarge, match="limit is"):  # a PNG cannot be decoded reduced
        buf = io.BytesIO()
        _pattern(*size).save(buf, "PNG")
        decode_image(buf.getvalue(), MB, max_pixels - 1 if decoded == size else max_pixels)


def test_a_jpeg_too_large_even_at_one_eighth_is_refused_from_its_header():
    buf = io.BytesIO()
    _pattern(1000, 700).save(buf, "JPEG")
    with pytest.raises(ImageTooLarge, match="1000x700 = 700000 pixels, 125x88 even decoded reduced; the limit is "
                                            "10000 pixels") as info:
        decode_image(buf.getvalue(), MB, 10_000)
    assert info.value.status == 413


def test_a_large_photo_read_reduced_is_not_logged_as_a_decompression_bomb(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)  # Pillow warns past it and refuses past twice it
    buf = io.BytesIO()
    _pattern(40, 40).save(buf, "JPEG")
    with warnings.catch_warnings(record=True) as caught:  # the filters as the service sets them
        assert decode_image(buf.getvalue(), MB, 10_000).pixels.shape == (40, 40, 3)
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)], caught
    buf = io.BytesIO()
    _pattern(50, 50).save(buf, "JPEG")
    with pytest.raises(ImageTooLarge, match="decompression bomb"):
        decode_image(buf.getvalue(), MB, 10_000)


def test_only_jpegs_are_reduced():
    buf = io.BytesIO()
    _pattern(1000, 700).save(buf, "PNG")
    img = decode_image(buf.getvalue(), MB * 4, 10_000_000, keep_side=200)
    assert img.pixels.shape == (700, 1000, 3) and img.scale == (1.0, 1.0)


def test_reduced_jpeg_with_exif_rotation_keeps_upright_upload_size():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    _pattern(800, 400).save(buf, "JPEG", exif=exif)
    img = decode_image(buf.getvalue(), MB, 10_000_000, keep_side=200)
    assert img.pixels.shape == (200, 100, 3)  # turned upright and reduced by 4
    assert (img.width, img.height) == (400, 800) and img.scale == (4.0, 4.0)


def _ink_on_transparent(ink: tuple[int, int, int]) -> Image.Image:
    """A bar of ``ink`` on fully transparent pixels that hide black (what most exporters write)."""
    im = Image.new("RGBA", (64, 32), (0, 0, 0, 0))
    im.paste((*ink, 255), (10, 10, 30, 20))
    return im


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("ink,background", [((0, 0, 0), 255), ((255, 255, 255), 0), ((20, 40, 200), 255)])
def test_transparent_pixels_become_a_background_that_contrasts_with_the_ink(fmt, ink, background):
    buf = io.BytesIO()
    _ink_on_transparent(ink).save(buf, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    px = decode_image(buf.getvalue(), MB, 10_000).pixels
    assert px.shape == (32, 64, 3) and px.dtype == np.uint8
    assert (px[0, 0] == background).all()  # not the black the transparent pixels hid
    assert tuple(px[15, 20]) == ink


def test_a_palette_png_with_a_transparent_entry_is_flattened_too():
    im = Image.new("P", (40, 20), 1)
    im.putpalette([0, 0, 0, 0, 0, 0])  # both entries black: only the transparency tells the bar from the rest
    im.paste(0, (5, 5, 15, 15))
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=1)
    px = decode_image(buf.getvalue(), MB, 10_000).pixels
    assert tuple(px[0, 0]) == (255, 255, 255) and tuple(px[10, 10]) == (0, 0, 0)


def test_sixteen_bit_greys_keep_their_contrast():
    grey = np.full((20, 40), 60_000, np.uint16)
    grey[5:15, 5:20] = 2_000
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "PNG")
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    px = decode_image(buf.getvalue(), MB, 10_000).pixels
    assert px.shape == (20, 40, 3)
    assert tuple(px[0, 0]) == (233,) * 3 and tuple(px[10, 10]) == (8,) * 3  # by 257, not clipped to white


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
def test_greys_of_fewer_bits_in_a_sixteen_bit_file_keep_their_contrast(bits):
    top = 2**bits - 1  # a dark photo: its paper under half the range, so its top value needs a bit less
    grey = np.full((20, 40), round(0.45 * top), np.uint16)
    grey[5:15, 5:20] = round(0.05 * top)
    for fmt in ("PNG", "TIFF"):
        buf = io.BytesIO()
        Image.fromarray(grey).save(buf, fmt)
        assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I;16")
        px = decode_image(buf.getvalue(), MB, 10_000).pixels.astype(int)
        assert abs(px[0, 0, 0] - 115) <= 1 and abs(px[10, 10, 0] - 13) <= 1, (fmt, px[0, 0, 0], px[10, 10, 0])


@pytest.mark.parametrize("paper,ink,expected", [(0.9, 0.1, (230, 26)), (-3.0, 900.0, (0, 255))])
def test_float_tiffs_come_out_as_their_greys(paper, ink, expected):
    grey = np.full((20, 40), paper, np.float32)
    grey[5:15, 5:20] = ink
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "TIFF")
    px = decode_image(buf.getvalue(), MB, 10_000).pixels
    assert (px[0, 0, 0], px[10, 10, 0]) == expected  # [0, 1] scaled by 255; other ranges stretched to their ends


def pages(fmt: str, sizes: list[tuple[int, int]], **kw) -> bytes:
    """One page per size, each filled with its own grey (page i: 40 * i) so that a test can tell which came back."""
    ims = [Image.new("L" if i % 2 else "RGB", size, 40 * (i + 1) if i % 2 else (40 * (i + 1),) * 3)
           for i, size in enumerate(sizes)]
    buf = io.BytesIO()
    ims[0].save(buf, fmt, save_all=True, append_images=ims[1:], **kw)
    return buf.getvalue()


def test_every_page_of_a_multi_page_tiff_is_read_and_counted():
    data = pages("TIFF", [(40, 20), (60, 30), (30, 50)], compression="tiff_lzw")
    for page, (w, h) in enumerate([(40, 20), (60, 30), (30, 50)], start=1):
        img = decode_image(data, MB, 10_000, page=page)
        assert (img.page, img.pages, img.width, img.height) == (page, 3, w, h)
        assert img.pixels.shape == (h, w, 3) and int(img.pixels[0, 0, 0]) == 40 * page
    with pytest.raises(PageOutOfRange, match="page 4 was asked for; the image has 3 pages") as info:
        decode_image(data, MB, 10_000, page=4)
    assert info.value.status == 422 and info.value.code == "page_out_of_range"


def test_the_pixel_limit_holds_for_the_page_asked_for():
    data = pages("TIFF", [(40, 20), (200, 100)])
    assert decode_image(data, MB, 10_000).pages == 2
    with pytest.raises(ImageTooLarge, match="200x100"):
        decode_image(data, MB, 10_000, page=2)


def test_frames_of_an_animated_webp_are_pages_and_a_single_image_has_one():
    data = pages("WEBP", [(40, 20)] * 3, lossless=True, duration=100)
    assert [int(decode_image(data, MB, 10_000, page=p).pixels[0, 0, 0]) for p in (1, 2, 3)] == [40, 80, 120]
    single = decode_image(encoded("PNG"), MB, 10_000)
    assert (single.page, single.pages) == (1, 1)
    with pytest.raises(PageOutOfRange, match=r"the image has 1 page$"):
        decode_image(encoded("JPEG"), MB, 10_000, page=2)


def test_a_tiff_of_more_pages_than_the_limit_is_refused_once_counting_passes_it():
    """Pillow reads every page's header to count them: 20,000 one-pixel pages held a thread for 2.7 s."""
    from serve_app.imaging import MAX_TIFF_PAGES

    most = pages("TIFF", [(1, 1)] * MAX_TIFF_PAGES)
    assert decode_image(most, MB, 10_000, page=MAX_TIFF_PAGES).pages == MAX_TIFF_PAGES
    with pytest.raises(ImageTooLarge, match=f"more than {MAX_TIFF_PAGES} pages") as info:
        decode_image(pages("TIFF", [(1, 1)] * (MAX_TIFF_PAGES + 1)), MB, 10_000)
    assert info.value.status == 413


def test_reaching_a_frame_of_an_animation_counts_every_frame_decoded_on_the_way():
    """Frames are drawn one over the other: frame N costs N frames' pixels, which must stay within the limit."""
    data = pages("WEBP", [(100, 100)] * 4, lossless=True, duration=100)
    assert decode_image(data, MB, 25_000, page=2).pages == 4  # 2 x 10,000 pixels
    with pytest.raises(ImageTooLarge, match=r"frame 3 of an animation .* 3 x 100x100 = 30000 pixels"):
        decode_image(data, MB, 25_000, page=3)


def with_scans(scans: int, size: tuple[int, int] = (800, 600)) -> bytes:
    """A flat grey progressive JPEG whose first luma AC scan (with its Huffman table) is repeated to ``scans`` scans.

    A repeated scan breaks the progression, which libjpeg only warns about; it costs a pass over every block, in a
    few bytes: the cheapest way to make decoding slow.
    """
    buf = io.BytesIO()
    Image.new("RGB", size, (128, 128, 128)).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC4, 0xDA, 0xD9)]
    for k, i in enumerate(starts):
        n_comp, first = data[i + 4], data[i + 5]
        if data[i + 1] == 0xDA and n_comp == 1 and first == 1 and data[i + 7] > 0:  # luma alone, Ss > 0: AC
            begin = starts[k - 1] if data[starts[k - 1] + 1] == 0xC4 else i
            scan = data[begin:starts[k + 1]]
            now = data.count(b"\xff\xda")
            return data[:starts[k + 1]] + scan * (scans - now) + data[starts[k + 1]:]
    raise AssertionError("no luma AC scan")


def test_a_jpeg_of_more_scans_than_the_limit_is_refused_before_decoding():
    """Each scan passes over every block; 2,010 scans in 376 kB of 36 MP held a decoding thread for 10.9 s."""
    from serve_app.imaging import MAX_JPEG_SCANS, jpeg_scans

    assert jpeg_scans(encoded("JPEG")) == 1
    assert 5 <= jpeg_scans(_progressive()) <= 12
    most = with_scans(MAX_JPEG_SCANS)
    assert jpeg_scans(most) == MAX_JPEG_SCANS
    assert decode_image(most, MB, 1_000_000).pixels.shape == (600, 800, 3)
    with pytest.raises(ImageTooLarge, match=f"split into {MAX_JPEG_SCANS + 1} scans") as info:
        decode_image(with_scans(MAX_JPEG_SCANS + 1), MB, 1_000_000)
    assert info.value.status == 413


def _progressive() -> bytes:
    buf = io.BytesIO()
    _pattern(300, 200).save(buf, "JPEG", progressive=True)
    return buf.getvalue()


def test_only_the_scans_of_the_image_itself_count():
    """Bytes that look like scans in a comment (or an EXIF thumbnail), or in a picture appended to it, are not."""
    from serve_app.imaging import jpeg_scans

    buf = io.BytesIO()
    Image.new("RGB", (40, 20)).save(buf, "JPEG", comment=b"\xff\xda" * 500)
    assert jpeg_scans(buf.getvalue()) == 1
    assert decode_image(buf.getvalue(), MB, 10_000).width == 40
    assert jpeg_scans(encoded("JPEG") + with_scans(500)) == 1
    assert jpeg_scans(b"\xff\xd8 not a jpeg") == 0


def test_a_pdf_page_is_rendered_at_the_asked_resolution_and_counted():
    data = text_pdf([["first page"], ["second", "page"]], width=360, height=144)
    for page in (1, 2):
        img = decode_image(data, MB, 10_000_000, keep_side=3392, page=page, pdf_dpi=150)
        assert (img.format, img.page, img.pages, img.dpi) == ("PDF", page, 2, 150)
        assert (img.width, img.height) == (750, 300) == (img.pixels.shape[1], img.pixels.shape[0])  # points x 150/72
        assert tuple(img.pixels[0, 0]) == (255, 255, 255) and (img.pixels < 100).any()  # ink on white paper
    assert (decode_image(data, MB, 10_000_000, page=1).pixels < 100).sum() != (
        decode_image(data, MB, 10_000_000, page=2).pixels < 100).sum()
    with pytest.raises(PageOutOfRange, match="page 3 was asked for; the PDF has 2 pages"):
        decode_image(data, MB, 10_000_000, page=3)


def test_a_pdf_page_turned_by_its_rotate_entry_comes_out_upright():
    img = decode_image(text_pdf([["turned"]], width=360, height=144, rotate=90), MB, 10_000_000, pdf_dpi=72)
    assert img.pixels.shape == (360, 144, 3)


def test_a_poster_sized_pdf_page_is_rendered_within_the_limits_not_refused():
    data = text_pdf([["poster"]], width=3000, height=2000)  # 42 x 28 inches: 46 MP at 200 dpi
    img = decode_image(data, MB, 1_000_000, keep_side=3392)
    assert img.width * img.height <= 1_000_000 and img.dpi < 200 and img.width / img.height == pytest.approx(1.5, 0.01)
    img = decode_image(data, MB, 40_000_000, keep_side=1000)
    assert img.width <= 1000 and img.dpi == pytest.approx(24, abs=0.01)


@pytest.mark.parametrize("data", [b"%PDF-1.7\nnot really a PDF", text_pdf([["cut"]])[:200]],
                         ids=["garbage", "truncated"])
def test_a_broken_pdf_is_a_corrupt_image(data):
    with pytest.raises(CorruptImage, match="PDF") as info:
        decode_image(data, MB, 10_000_000)
    assert info.value.status == 400


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_uploads_decoded_in_several_threads_at_once_come_out_as_alone():
    # the ingress decodes in a thread pool: nothing process-wide (PDFium, warning filters) may leak between uploads
    uploads = [(pages("TIFF", [(90, 40), (60, 120)]), 2), (text_pdf([["one"], ["two"]]), 2),
               (encoded("PNG", size=(300, 200), mode="L"), 1), (png(_pattern(900, 600)), 1),
               (encoded("JPEG", size=(800, 400)), 1), (text_pdf([["cut"]])[:200], 1)]

    def decode(data: bytes, page: int) -> tuple:
        try:
            img = decode_image(data, 10 * MB, 10_000_000, page=page, pdf_dpi=100)
        except Exception as exc:  # noqa: BLE001 - errors must match too
            return type(exc).__name__, str(exc)
        return img.format, img.page, img.pages, img.pixels.tobytes()

    alone = [decode(*u) for u in uploads]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            assert list(pool.map(lambda u: decode(*u), uploads * 3)) == alone * 3


def test_a_phones_full_size_48_mp_heic_is_read_in_full_under_the_default_pixel_limit():
    """An iPhone's "HEIF Max" photo is 8064x6048: 48.8 MP. HEIC has no reduced decode, so the 40 MP limit refused it;
    the default limit takes it (and 50 MP sensors' 8160x6120), and still refuses what lies past."""
    from serve_app.config import IngressSettings

    photo = Image.new("RGB", (8064, 6048), (236, 232, 224))
    photo.paste((20, 20, 20), (3000, 2900, 5000, 3100))
    data = save(photo, "HEIF", quality=50, enc_params={"preset": "ultrafast"})  # 2-3 s to encode: x265's fastest
    limit = IngressSettings().max_pixels
    assert limit >= 8160 * 6120
    decoded = decode_image(data, 10 * MB, limit)
    assert (decoded.width, decoded.height) == (8064, 6048) and decoded.pixels.shape == (6048, 8064, 3)
    assert tuple(decoded.pixels[3000, 4000]) == pytest.approx((20, 20, 20), abs=8)
    with pytest.raises(ImageTooLarge):
        decode_image(data, 10 * MB, 40_000_000)  # the limit it had
