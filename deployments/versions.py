"""Deployment versions that change only when a replica has to restart.

Without a version, ``serve.run`` gives every deployment a random one, and a new version replaces every replica: a
redeploy that changed one ``user_config`` value (a batch window, the admission limit) reloaded both models, 20-40 s
on two cores, although replicas take those values in place through ``reconfigure``. Serve compares its own options
(actor options, replica counts, ``user_config``) itself but not a deployment's init arguments, so the version here
covers what it does not: those arguments less the values that travel as ``user_config`` or Serve options, the
source of our packages, and the weight files they name.

Config deploys (``serve deploy``, the RayService) ignore these versions: Serve derives theirs from the import path
and the application's args there.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, cast

from ray.serve import Deployment

log = logging.getLogger(__name__)

PACKAGES = ("serve_app", "deployments")  # what replicas run; a changed file must not keep an old replica


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def file_stamp(path: Path | None) -> str | None:
    """Size and modification time: a retrained file at the same path is a new model (hashing 20 MB would be too)."""
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"


def version_of(*parts: Any) -> str:
    blob = json.dumps([source_fingerprint(), *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def pinned(decorated: Deployment | type, *parts: Any) -> Deployment:
    """The deployment with a version made of ``parts`` (what its replicas were built from) and our source.

    Serve 2.60 keeps setting a version only as an internal option. If a later Serve drops it, the deployment comes
    back as it was (a random version: correct, only slower to redeploy). ``type``: a class under `serve.deployment`
    is a `Deployment`, but type checkers do not apply class decorators and see the class.
    """
    deployment = cast(Deployment, decorated)
    try:
        return deployment.options(version=version_of(*parts), _internal=True)
    except (TypeError, ValueError) as e:
        log.warning("Serve no longer takes a deployment version (%s): every redeploy restarts %s", e, deployment.name)
        return deployment
