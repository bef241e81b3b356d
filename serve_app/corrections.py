"""A stored answer's text as its users corrected it: what `GET /api/v1/images/{id}/data?format=text` gives."""

from __future__ import annotations

from typing import Any


def corrected_lines(data: dict[str, Any]) -> list[str]:
    """The stored lines, each as its latest correction says; or the latest whole-image correction, where one came.

    ``data`` is what the archiver gives back (`repository.image_data`): ``lines`` and ``corrections``, oldest first.
    A correction of a line the answer does not have changes nothing.
    """
    lines = [ln["text"] for ln in data["lines"]]
    whole = [c["value"] for c in data["corrections"] if c["line_index"] is None]
    if whole:
        return whole[-1].splitlines()
    for c in data["corrections"]:
        if 0 <= c["line_index"] < len(lines):
            lines[c["line_index"]] = c["value"]
    return lines


def as_corrected(answer: dict[str, Any], lines: list[str]) -> dict[str, Any]:
    """``answer`` with each line whose text ``lines`` changes as one word of the corrected text over its box.

    A correction says a line's text, not where its words are: the searchable PDF lays it over the line, ALTO marks
    the line corrected (``CS``). A whole-image correction with another number of lines than were read cannot be
    placed: the words stay as read.
    """
    if len(lines) != len(answer["lines"]):
        return answer
    out = []
    for line, text in zip(answer["lines"], lines, strict=True):
        if text != line["text"]:
            line = {**line, "text": text, "words": [{"text": text, "box": line["box"], "confidence": 1.0}],
                    "corrected": True}
        out.append(line)
    return {**answer, "lines": out}
