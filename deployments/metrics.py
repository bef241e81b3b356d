"""Custom metrics through ``ray.serve.metrics``; Ray exports them on its Prometheus endpoint (``ray_`` prefix).

Created lazily inside replicas (metric objects must live in the process that records them).
"""

from __future__ import annotations

import functools
from typing import cast

from ray.serve.metrics import Counter, Gauge, Histogram

MS_BUCKETS: list[float] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000]


def _tags(*keys: str) -> tuple[str]:
    """``tag_keys`` as Ray's hints spell it (a 1-tuple); it takes any number of keys."""
    return cast("tuple[str]", keys)


@functools.cache
def ingress() -> dict:
    return {
        "requests": Counter("ocr_requests_total", "OCR requests by HTTP status, error code, layout and answer "
                            "format.", tag_keys=_tags("status", "code", "layout", "format")),
        "images": Counter("ocr_images_total", "Images read successfully."),
        "replicas_lost": Counter("ocr_replicas_lost_total", "Calls from the ingress whose replica was lost mid-call "
                                 "(each was sent again, or given up).", tag_keys=("target",)),
        "not_stored": Counter("ocr_results_not_stored_total", "Answers given but not handed to storage, by reason.",
                              tag_keys=("reason",)),
        "stage_ms": Histogram("ocr_stage_latency_ms", "Time per stage of an OCR request, by layout.",
                              boundaries=MS_BUCKETS, tag_keys=_tags("stage", "layout")),
        "lines": Histogram("ocr_lines_per_image", "Text lines found per image.",
                           boundaries=[1, 2, 5, 10, 20, 50, 100]),
        "words": Histogram("ocr_words_per_image", "Words read per image.", boundaries=[1, 5, 10, 25, 50, 100, 250]),
        "pixels": Histogram("ocr_image_megapixels", "Uploaded image size.", boundaries=[0.1, 0.3, 1, 2, 4, 8, 16, 40]),
    }


@functools.cache
def recognizer() -> Histogram:
    return Histogram("ocr_recognizer_batch_crops", "Line crops per recognizer forward batch.",
                     boundaries=[1, 2, 4, 8, 16, 32, 64, 128])


@functools.cache
def detector() -> Histogram:
    return Histogram("ocr_detector_batch_images", "Images (or tall strips' parts) per detector batch.",
                     boundaries=[1, 2, 3, 4, 6, 8, 16])


@functools.cache
def storage() -> dict:
    return {
        "spool_depth": Gauge("ocr_spool_depth", "Messages waiting in the sidecar's on-disk spool."),
        "spool_full": Gauge("ocr_spool_full", "1 while the spool refuses messages."),
        "spool_oldest_s": Gauge("ocr_spool_oldest_seconds", "How long the oldest message in the spool has waited for "
                                "the broker (0 when the spool is empty)."),
        "publish_failures": Gauge("ocr_publish_failures", "Failed publish attempts since the sidecar started."),
        "dropped": Gauge("ocr_messages_dropped", "Messages refused by a full spool since the sidecar started."),
        "database_up": Gauge("ocr_database_up", "1 while the archiver's database answers (probed every 2 s)."),
        "archiver_connected": Gauge("ocr_archiver_connected", "1 while the archiver consumes the queues."),
        "archiver_lag_s": Gauge("ocr_archiver_lag_seconds", "Age of the last archived message when stored."),
        "archived": Gauge("ocr_archived_total", "Messages archived since the archiver started.", tag_keys=("kind",)),
    }
