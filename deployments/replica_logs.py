"""Library log lines into the replica's own log, where Serve's format and log settings apply.

Serve's replica log takes the ``ray.serve`` logger only. ``serve_app`` logs under its module names, and never
imports Ray, so its INFO lines (retention's "deleted N images", a deletion at its owner's request, the archiver
(re)connecting) were dropped by the root logger, and its warnings reached the worker's stderr unformatted, without
time or replica.
"""

from __future__ import annotations

import logging

LIBRARY_LOGGERS = ("serve_app",)


class _ToServe(logging.Handler):
    """Hands each record to ``ray.serve``'s handlers, whichever Serve has set up by then."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("ray.serve").handle(record)


def into_replica_log(level: int = logging.INFO) -> None:
    """Called in a replica's ``__init__``; calling it again changes nothing."""
    for name in LIBRARY_LOGGERS:
        lib = logging.getLogger(name)
        lib.setLevel(level)
        if not any(isinstance(h, _ToServe) for h in lib.handlers):
            lib.addHandler(_ToServe())
        lib.propagate = False  # not also to the root logger's last-resort handler on stderr
