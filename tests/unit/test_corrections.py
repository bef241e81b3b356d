"""The corrected text of a stored answer (`serve_app.corrections`); its route: tests/serve/test_storage_api.py."""

from serve_app.corrections import corrected_lines


def stored(*lines: str, corrections: list[tuple[int | None, str]] = ()) -> dict:
    return {"lines": [{"text": t} for t in lines],
            "corrections": [{"line_index": i, "value": v} for i, v in corrections]}


def test_each_line_reads_as_its_latest_correction():
    data = stored("Totl due", "38.9O", "Thank you", corrections=[(0, "Total du"), (1, "38.90"), (0, "Total due")])
    assert corrected_lines(data) == ["Total due", "38.90", "Thank you"]
    assert corrected_lines(stored("as read")) == ["as read"]
    assert corrected_lines(stored("one", corrections=[(3, "no such line")])) == ["one"]


def test_the_latest_whole_image_correction_is_the_text():
    data = stored("a", "b", corrections=[(None, "first\ntry"), (0, "A"), (None, "Invoice 4521\nTotal 38.90")])
    assert corrected_lines(data) == ["Invoice 4521", "Total 38.90"]
