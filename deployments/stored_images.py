"""The work behind the routes over stored images: reads, deletes and corrections, through the archiver and sidecar.

The ingress's routes validate nothing themselves and call these. Every read goes through ``call`` (the ingress's
calls, sent again where a replica was lost); a database that cannot be reached is a 503 with ``Retry-After``.
"""

import asyncio
import collections
import dataclasses
import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse, PlainTextResponse
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from deployments import conditional, request_ids, retries
from deployments.api_spec import StoredOutput
from deployments.errors import error
from deployments.ingress_calls import Call, InThread
from serve_app import alto, documents, hocr, searchable_pdf, tsv
from serve_app.config import IngressSettings
from serve_app.corrections import as_corrected, corrected_lines
from serve_app.imaging import ImageError
from serve_app.layout import line_blocks, plain_text, with_blocks
from serve_app.pdf_sandbox import PdfSandbox
from serve_app.schemas import CorrectionIn
from serve_app.storage.repository import StorageUnavailable


@dataclasses.dataclass(frozen=True)
class _Target:
    """An image id checked for a deployment that stores: its canonical form, and the handles that hold it."""

    id: str
    archiver: DeploymentHandle
    sidecar: DeploymentHandle


#: What `StoredImages._stored_new` gives where the archiver lacks the method (it is of the previous release).
OLDER = object()


class StoredImages:
    """Stored images, their answers as corrected, and corrections to them.

    ``recent``: the ingress's ids answered lately, with how many lines each answer had, which a correction is checked
    against without a database read; shared with the ingress, which adds to it.
    """

    def __init__(self, limits: IngressSettings, archiver: DeploymentHandle | None, sidecar: DeploymentHandle | None,
                 recent: collections.OrderedDict[str, int], call: Call, in_thread: InThread,
                 pdfs: PdfSandbox) -> None:
        self.limits, self.archiver, self.sidecar, self.recent = limits, archiver, sidecar, recent
        self.call, self.in_thread, self.pdfs = call, in_thread, pdfs

    def _retry(self) -> dict[str, str]:
        return {"Retry-After": str(self.limits.retry_after_s)}

    async def _stored(self, read: Callable[[], Any]) -> tuple[Any, JSONResponse | None]:
        """A read from the archiver, or the 503 to answer when the database cannot be reached right now."""
        try:
            return await self.call("Archiver", read), None
        except (StorageUnavailable, retries.ReplicaLost) as exc:
            return None, error(503, "storage_unavailable", f"{exc}; retry shortly", headers=self._retry())

    async def _stored_new(self, read: Callable[[], Any]) -> tuple[Any, JSONResponse | None]:
        """`_stored` of an archiver method new in this release, or ``OLDER`` where the archiver has not got it.

        That archiver is of the previous release, during an in-place update (docs/deploy.md).
        """
        try:
            return await self._stored(read)
        except RayServeException as exc:
            if "does not exist" not in str(exc):
                raise
            return OLDER, None

    def _target(self, image_id: str) -> _Target | JSONResponse:
        """Validate an id and that storage is on; returns the canonical id with the storage handles, or an error."""
        try:
            canonical = str(uuid.UUID(image_id))
        except ValueError:
            return error(400, "invalid_id", f"{image_id!r} is not a UUID")
        if self.archiver is None or self.sidecar is None:
            # 501, not 503: no wait changes it, so no client should send it again
            return error(501, "storage_disabled", "results are not stored by this deployment")
        return _Target(canonical, self.archiver, self.sidecar)

    def _pages_of(self, document_id: str) -> list[str]:
        return [request_ids.page_id(document_id, n) for n in range(1, self.limits.max_pages + 1)]

    async def image(self, image_id: str, if_none_match: str | None, head: bool = False) -> Response:
        """The stored upload, with its SHA-256 as ETag; a document's id gives the file its pages share.

        ``head``: its headers alone, from the file's size and name where the name holds its tag (the file unread).
        """
        target = self._target(image_id)
        if isinstance(target, JSONResponse):
            return target
        archiver = target.archiver
        response = await self._file(target.id, archiver, if_none_match, head)
        if response is not None:
            return response
        ids, problem = await self._ids(target.id, archiver)  # not an image's id: a document's?
        if problem:
            return problem
        if ids and ids != [target.id]:  # its pages are one file: its first stored page names it
            response = await self._file(ids[0], archiver, if_none_match, head)
        return response or error(404, "not_found", f"no stored image {target.id}")

    async def _file(self, image_id: str, archiver: DeploymentHandle, if_none_match: str | None,
                    head: bool = False) -> Response | None:
        """An image's stored file (or 304, or 503), or None where ``image_id`` is not a stored image."""
        cache = {"Cache-Control": "private, no-cache"}

        def unchanged(tag: str) -> Response:
            return Response(status_code=304, headers={**cache, "ETag": f'"{tag}"'})

        if head:
            found, problem = await self._stored_new(lambda: archiver.image_head.remote(image_id))
            if problem:
                return problem
            if found is not None and found is not OLDER:
                size, media_type, tag = found
                if if_none_match and conditional.names(if_none_match, tag):
                    return unchanged(tag)
                return Response(media_type=media_type,
                                headers={**cache, "ETag": f'"{tag}"', "Content-Length": str(size)})
        elif if_none_match:
            tag, problem = await self._stored(lambda: archiver.image_tag.remote(image_id))
            if problem:
                return problem
            if tag is not None and conditional.names(if_none_match, tag):
                return unchanged(tag)
        found, problem = await self._stored_new(lambda: archiver.image_file.remote(image_id))
        if found is OLDER:  # that release's `image`: bytes and type, no tag
            found, problem = await self._stored(lambda: archiver.image.remote(image_id))
            found = None if found is None else (*found, None)
        if problem:
            return problem
        if found is None:
            return None
        data, media_type, tag = found
        if tag is None:  # a file named by its id (or read from an archiver that cannot say): its tag needs the file
            tag = await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())
        if if_none_match and conditional.names(if_none_match, tag):
            return unchanged(tag)
        return Response(data, media_type=media_type, headers={**cache, "ETag": f'"{tag}"'})

    async def data(self, image_id: str, output: StoredOutput) -> Response:
        """What is stored of an answer, with the corrections sent since; a document's id gives its pages."""
        target = self._target(image_id)
        if isinstance(target, JSONResponse):
            return target
        canonical, archiver = target.id, target.archiver
        found, problem = await self._stored(lambda: archiver.data.remote(canonical))
        if problem:
            return problem
        if found is None:  # not an image's id: a document's (``?pages=``)?
            return await self._document(canonical, archiver, output)
        if not found.pop("results_stored", True):  # its file came first: no lines here would read as "no text"
            return self._on_its_way(canonical)
        if output == "text":
            corrected = corrected_lines(found)
            same_lines = len(corrected) == len(found["lines"])
            return PlainTextResponse(plain_text(corrected, line_blocks(found) if same_lines else None))
        if output == "pdf":
            answer = as_corrected({**found, "request_id": canonical}, corrected_lines(found))
            return await self._pdf(canonical, archiver, [answer], canonical)
        if output in ("hocr", "alto", "tsv"):  # each corrected line one word of its text, over the line
            answer = as_corrected({**found, "request_id": canonical}, corrected_lines(found))
            if output == "hocr":
                return Response(hocr.to_hocr(answer), media_type=hocr.MEDIA_TYPE)
            if output == "tsv":
                return Response(tsv.to_tsv(answer), media_type=tsv.MEDIA_TYPE)
            return Response(alto.to_alto(answer), media_type=alto.MEDIA_TYPE)
        return JSONResponse(with_blocks(found))

    async def _ids(self, image_id: str, archiver: DeploymentHandle) -> tuple[list[str], JSONResponse | None]:
        """``[image_id]`` where it is a stored image; a document's id (``?pages=``): the ids of its pages stored."""
        pages = self._pages_of(image_id)
        ids, problem = await self._stored_new(lambda: archiver.stored.remote(image_id, pages))
        if ids is OLDER:  # read the id as that release did, as an image's
            return [image_id], None
        return ids or [], problem

    def _on_its_way(self, image_id: str) -> JSONResponse:
        return error(404, "not_found", f"the results of image {image_id} are not stored yet: they are on their way "
                     "(seconds after the answer, longer while the database is down); ask again shortly",
                     headers=self._retry())

    async def _document(self, document_id: str, archiver: DeploymentHandle, output: StoredOutput) -> Response:
        """A document's stored pages (each as its own id reads it) as one document, in the format asked for.

        As ``?pages=`` answered it, with the corrections sent since: JSON ``id`` and ``pages``; text with each page
        ended by a form feed; one hOCR, ALTO or TSV document, or one searchable PDF of its pages. 404 where
        ``document_id`` names no stored page.
        """
        ids, problem = await self._ids(document_id, archiver)
        if problem:
            return problem
        if not ids or ids == [document_id]:  # none; or an image after all, stored since it was looked for
            return error(404, "not_found", f"no stored results for image {document_id}")

        def data_of(page: str) -> Callable[[], Any]:
            return lambda: archiver.data.remote(page)

        reads = await asyncio.gather(*(self._stored(data_of(i)) for i in ids))
        problem = next((problem for _, problem in reads if problem), None)
        if problem:
            return problem
        pages = [page for page, _ in reads]
        if any(p is None for p in pages):  # deleted between the two reads
            return error(404, "not_found", f"no stored results for image {document_id}")
        if not all([p.pop("results_stored", True) for p in pages]):
            return self._on_its_way(document_id)
        if output == "json":
            return JSONResponse({"id": document_id, "pages": [with_blocks(p) for p in pages]})
        if output == "text":
            return PlainTextResponse("".join(
                plain_text(lines, line_blocks(p) if len(lines) == len(p["lines"]) else None) + documents.PAGE_BREAK
                for p, lines in ((p, corrected_lines(p)) for p in pages)))
        answers = [as_corrected({**p, "request_id": p["id"]}, corrected_lines(p)) for p in pages]
        if output == "pdf":
            return await self._pdf(answers[0]["request_id"], archiver, answers, document_id)
        content, media_type, headers = documents.formatted(
            {"request_id": document_id, "pages": answers}, output, None)
        return Response(content, media_type=media_type, headers=headers)

    async def _pdf(self, image_id: str, archiver: DeploymentHandle, answers: list[dict[str, Any]],
                   name: str) -> Response:
        """Stored answers, as corrected, over the stored file they were read from: a searchable PDF, not read again."""
        stored, problem = await self._stored(lambda: archiver.image.remote(image_id))
        if problem:
            return problem
        if stored is None:  # its rows are there, its file not (deleted between the two reads)
            return error(404, "not_found", f"no stored image {image_id}")
        try:
            pdf = await self.in_thread("pdf", searchable_pdf.from_upload, answers, stored[0], name,
                                       self.limits.max_pixels, self.pdfs.overlay)
        except ImageError as exc:  # read once, so unlikely: a file changed on disk, a sandbox worker stopped
            return error(exc.status, exc.code, str(exc))
        return Response(pdf, media_type=searchable_pdf.MEDIA_TYPE,
                        headers={"Content-Disposition": f'inline; filename="{name}.pdf"'})

    async def forget(self, image_id: str) -> Response:
        """Delete a stored image (a document's every page) with its results and corrections: 204, stored yet or not."""
        target = self._target(image_id)
        if isinstance(target, JSONResponse):
            return target
        canonical, archiver = target.id, target.archiver
        pages = self._pages_of(canonical)
        _, problem = await self._stored(lambda: archiver.delete.remote(canonical, pages))
        if problem:
            return problem
        for forgotten in (canonical, *pages):  # a correction to it is no longer taken on trust
            self.recent.pop(forgotten, None)
        return Response(status_code=204)

    async def correct(self, image_id: str, correction: CorrectionIn) -> JSONResponse:
        """A line's text, or the whole image's, checked against the answer, then handed to the sidecar: 202."""
        target = self._target(image_id)
        if isinstance(target, JSONResponse):
            return target
        document, archiver = target.id, target.archiver
        canonical = document if correction.page is None else request_ids.page_id(document, correction.page)
        lines = self.recent.get(canonical)
        if lines is None:  # answered by another replica, or long ago: the database knows
            found, problem = await self._stored(lambda: archiver.data.remote(canonical))
            if problem:
                return problem
            if found is None and correction.page is not None:
                return error(404, "not_found", f"no page {correction.page} of document {document} to correct (a "
                             "?pages= request's id; a page's own id takes no `page`)")
            if found is None:
                pages, problem = await self._ids(canonical, archiver)
                if problem:
                    return problem
                if pages and pages != [canonical]:  # a document's id: which page, then?
                    return error(422, "page_required", f"{canonical} is a document of {len(pages)} stored pages "
                                 "(the id of a ?pages= request): say which page the correction is for (`page`, "
                                 "from 1), or send it to the page's own id")
                return error(404, "not_found", f"no image {canonical} to correct")
            if found.get("results_stored", True):  # else its answer is on its way: the line is taken on trust
                lines = len(found["lines"])
        if correction.line_index is not None and lines is not None and correction.line_index >= lines:
            held = f"lines 0 to {lines - 1}" if lines > 1 else "line 0" if lines else "no lines"
            return error(422, "line_out_of_range", f"line_index {correction.line_index} was sent; the answer for "
                         f"image {canonical} has {held}. Leave line_index out to correct the whole image's text")
        cid = str(correction.correction_id or uuid.uuid4())
        try:  # the same id however often it is sent: the archiver stores a correction once
            spooled = await self.call("Sidecar", lambda: target.sidecar.correct.remote(
                canonical, correction.value, correction.line_index, cid))
        except retries.ReplicaLost as exc:
            return error(503, "storage_unavailable", f"{exc}; the correction was not taken: send it again shortly",
                         headers=self._retry())
        if not spooled:
            return error(503, "spool_full", "corrections cannot be accepted right now", headers=self._retry())
        return JSONResponse({"correction_id": cid, "image_id": canonical, "status": "accepted"}, status_code=202)
