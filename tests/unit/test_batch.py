"""Which files a batch reads, where their outputs go, and that an output is there whole or not at all."""

import os
from pathlib import Path

import pytest

from serve_app import batch


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_folder_gives_its_readable_files_sorted_and_an_output_folder_inside_it_is_left_out(tmp_path):
    for name in ("b/2.JPG", "b/1.png", "a/scan.pdf", "a/notes.txt", "a/.thumb.png", ".cache/x.png", "top.tiff",
                 "out/pdf/a/scan.pdf.pdf", "c/d/e.heic"):
        touch(tmp_path / name)
    found = batch.collect([tmp_path], outputs=[tmp_path / "out" / "pdf"])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a/scan.pdf", "b/1.png", "b/2.JPG", "c/d/e.heic", "top.tiff"]


def test_files_named_are_kept_as_given_whatever_their_name_and_each_file_is_read_once(tmp_path):
    notes = touch(tmp_path / "notes.txt")  # the service judges it by its bytes, and says what it is
    scan = touch(tmp_path / "s" / "scan.png")
    missing = tmp_path / "gone.png"  # reported as unreadable, in its place
    found = batch.collect([notes, scan, tmp_path / "s", missing, tmp_path / "s" / ".." / "s" / "scan.png"])
    assert found == [notes, scan, missing]


def test_outputs_keep_the_subfolders_below_what_every_input_shares(tmp_path):
    files = [tmp_path / "scans/2024/01/page1.jpg", tmp_path / "scans/2024/02/page1.jpg"]
    assert [n.as_posix() for n in batch.relative_names(files)] == ["01/page1.jpg", "02/page1.jpg"]
    flat = [tmp_path / "scans/a.jpg", tmp_path / "scans/b.pdf"]  # as before: DIR/<file name>.<ext>
    assert [n.as_posix() for n in batch.relative_names(flat)] == ["a.jpg", "b.pdf"]
    assert [n.as_posix() for n in batch.relative_names([Path("one.png")])] == ["one.png"]
    assert batch.relative_names([]) == []
    out = batch.targets(Path("01/page1.jpg"), {"pdf": tmp_path / "pdf", "text": tmp_path / "txt"})
    assert out == {"text": tmp_path / "txt/01/page1.jpg.txt", "pdf": tmp_path / "pdf/01/page1.jpg.pdf"}


def test_a_file_is_done_when_every_output_asked_for_is_there(tmp_path):
    outputs = batch.targets(Path("a.png"), {"text": tmp_path / "t", "hocr": tmp_path / "h"})
    assert not batch.done(outputs)
    touch(outputs["text"])
    assert not batch.done(outputs)  # one of two: read it again
    touch(outputs["hocr"])
    assert batch.done(outputs)
    assert not batch.done({})  # nothing asked for: nothing can say it is done


def test_an_output_is_written_whole_or_not_at_all(tmp_path):
    target = tmp_path / "deep" / "a.png.txt"
    batch.write_whole(target, "text\n\f")
    assert target.read_text() == "text\n\f"
    batch.write_whole(target, b"again")
    assert target.read_bytes() == b"again"
    blocked = tmp_path / "blocked.txt"
    blocked.mkdir()  # the rename fails: nothing is left behind, not even the temporary file
    with pytest.raises(OSError):
        batch.write_whole(blocked, "text")
    assert sorted(os.listdir(tmp_path)) == ["blocked.txt", "deep"]
    assert os.listdir(blocked) == []
    assert sorted(os.listdir(target.parent)) == ["a.png.txt"]


def test_text_output_ends_every_page_with_a_form_feed():
    pages = [{"lines": [{"text": "First", "block": 0}, {"text": "Second", "block": 1}]}, {"lines": []}]
    assert batch.render("text", pages, b"", "a.pdf") == "First\n\nSecond\n\f\f"


def test_items_are_handed_on_in_order_and_only_those_ahead_of_a_missing_one_wait():
    out: list[str] = []
    order = batch.InOrder(out.append)
    order.put(1, "b")
    order.put(2, "c")
    assert out == [] and len(order.waiting) == 2
    order.put(0, "a")
    assert out == ["a", "b", "c"] and not order.waiting
    order.put(3, "d")
    assert out == ["a", "b", "c", "d"]


def test_a_file_that_is_another_files_output_in_the_folder_read_is_not_read_again(tmp_path):
    """``client scans/ --pdf scans/``: the second run found a.jpg.pdf beside a.jpg and read it as a scan."""
    scans = tmp_path / "scans"
    for name in ("a.jpg", "a.jpg.pdf", "a.jpg.pdf.pdf", "b.pdf", "b.pdf.txt", "sub/c.png", "sub/c.png.pdf"):
        touch(scans / name)
    folders = {"pdf": scans, "text": scans}
    plan = batch.plan([scans], folders)
    assert [(p.relative_to(scans).as_posix(), {k: v.relative_to(scans).as_posix() for k, v in out.items()})
            for p, out in plan] == [
        ("a.jpg", {"text": "a.jpg.txt", "pdf": "a.jpg.pdf"}),
        ("b.pdf", {"text": "b.pdf.txt", "pdf": "b.pdf.pdf"}),
        ("sub/c.png", {"text": "sub/c.png.txt", "pdf": "sub/c.png.pdf"})]
    # a scan that merely looks like an output is read where it is not one (no --pdf), or where it is named
    assert [p.name for p, _ in batch.plan([scans], {"text": scans})] == [
        "a.jpg", "a.jpg.pdf", "a.jpg.pdf.pdf", "b.pdf", "c.png", "c.png.pdf"]
    assert [p.name for p, _ in batch.plan([scans / "a.jpg.pdf", scans / "a.jpg"], folders)] == ["a.jpg.pdf", "a.jpg"]


def test_leaving_out_outputs_names_the_rest_below_the_folder_they_share(tmp_path):
    """Two folders read into the first: its outputs of the other one sat a level down and were read as scans."""
    one, two = tmp_path / "one", tmp_path / "two"
    touch(one / "x.jpg")
    touch(two / "y.png")
    touch(one / "two" / "y.png.pdf")  # written by an earlier run into one/, below the folder both share
    touch(one / "one" / "x.jpg.pdf")
    plan = batch.plan([one, two], {"pdf": one})
    assert [(p.relative_to(tmp_path).as_posix(), out["pdf"].relative_to(tmp_path).as_posix()) for p, out in plan] == [
        ("one/x.jpg", "one/one/x.jpg.pdf"), ("two/y.png", "one/two/y.png.pdf")]


def test_standard_input_is_read_once_and_its_outputs_are_named_stdin(tmp_path):
    scan = touch(tmp_path / "scans" / "a.png")
    plan = batch.plan([batch.STDIN, scan, batch.STDIN], {"text": tmp_path / "out"})
    out = tmp_path / "out"
    assert plan == [(batch.STDIN, {"text": out / "stdin.txt"}), (scan, {"text": out / "a.png.txt"})]
    assert batch.relative_names([batch.STDIN]) == [Path("stdin")]
    dash = touch(tmp_path / "-")  # a file of that name is ./-
    assert batch.collect([batch.STDIN, tmp_path / "-"]) == [batch.STDIN, dash]


def test_a_files_items_are_handed_on_as_they_come_while_it_is_the_head_and_wait_otherwise():
    """The command line prints a long PDF's pages as they are read, while no file before it is still being read."""
    out: list[str] = []
    order = batch.InOrder(out.append)
    order.add(1, "b1")
    order.add(0, "a1")
    assert out == ["a1"]  # the head's, at once; the next file's waits
    order.add(0, "a2")
    order.add(2, "c1")
    order.close(2)
    assert out == ["a1", "a2"]
    order.close(0)
    assert out == ["a1", "a2", "b1"]  # now the head: what waited of it, and what comes, at once
    order.add(1, "b2")
    assert out[-1] == "b2"
    order.close(1)
    assert out == ["a1", "a2", "b1", "b2", "c1"] and not order.waiting and not order.closed
