"""The application graph, built from the typed config.

``serve run deployments.app:app`` (defaults or OCR_CONFIG), or
``serve run deployments.app:build_app config=path.yaml``. ``serve build deployments.app:app`` writes the same
options out as a Serve config file, which the RayService embeds.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.serve import Application

from deployments import routing
from deployments.archiver import ArchiverDeployment
from deployments.detector import Detector
from deployments.ingress import Ingress
from deployments.recognizer import Recognizer
from deployments.sidecar import Sidecar
from deployments.versions import file_stamp, pinned
from serve_app.config import AppConfig, resolve_weights
from serve_app.ocr import runtime

log = logging.getLogger(__name__)


# Settings a running replica takes without a restart: they reach it as user_config (``reconfigure``) or as Serve's
# own scaling options, so they stay out of the deployment versions (deployments/versions.py).
LIVE_SETTINGS: dict[str, set[str]] = {
    "detector": {"max_batch_size", "batch_wait_timeout_s", "num_replicas", "autoscaling", "max_ongoing_requests"},
    # crops_per_part is the ingress's to use (how it splits a page's crops), so it reaches the ingress
    "recognizer": {"max_batch_size", "batch_wait_timeout_s", "autoscaling", "max_ongoing_requests", "crops_per_part"},
    "ingress": {"max_inflight", "max_requests_per_client", "request_timeout_s", "num_replicas", "max_ongoing_requests"},
}


def _weights(cfg: AppConfig) -> list[str | None]:
    r = cfg.recognizer
    return [file_stamp(resolve_weights(cfg.detector.weights)), file_stamp(resolve_weights(r.weights)),
            file_stamp(resolve_weights(r.lexicon) if r.lexicon else None)]


def graph(cfg: AppConfig) -> Application:
    d, r, i = cfg.detector, cfg.recognizer, cfg.ingress
    built_from = cfg.model_dump(mode="json", exclude=LIVE_SETTINGS)
    weights = _weights(cfg)
    detector = pinned(Detector, built_from["detector"], weights[0]).options(
        **d.scaling(),
        max_ongoing_requests=d.max_ongoing_requests,
        request_router_config=routing.spread(),  # a tall strip's parts go to every replica
        user_config={"max_batch_size": d.max_batch_size, "batch_wait_timeout_s": d.batch_wait_timeout_s},
        ray_actor_options={"num_cpus": d.num_cpus, "num_gpus": d.num_gpus,
                           "runtime_env": {"env_vars": runtime.replica_env(d.kernel_cache)}},
    ).bind(d.model_dump(mode="json"))
    recognizer = pinned(Recognizer, built_from["recognizer"], weights[1:]).options(
        autoscaling_config=r.autoscaling.to_serve(),
        max_ongoing_requests=r.max_ongoing_requests,
        request_router_config=routing.spread(),  # a long page's parts go to every replica
        user_config={"max_batch_size": r.max_batch_size, "batch_wait_timeout_s": r.batch_wait_timeout_s},
        ray_actor_options={"num_cpus": r.num_cpus, "num_gpus": r.num_gpus,
                           "runtime_env": {"env_vars": runtime.replica_env(r.kernel_cache)}},
    ).bind(r.model_dump(mode="json"))
    sidecar = archiver = None
    if cfg.storage.resolved().enabled:
        # the unresolved settings travel: URLs stay in each replica's environment, not in the Serve config
        settings = cfg.storage.model_copy(update={  # replicas may run elsewhere: anchor relative dirs here
            "image_dir": cfg.storage.image_dir.absolute(), "spool_dir": cfg.storage.spool_dir.absolute(),
        }).model_dump(mode="json")
        sidecar = pinned(Sidecar, settings).bind(settings)
        archiver = pinned(ArchiverDeployment, settings).bind(settings)
    else:
        log.warning("storage is OFF: results are not being stored (set DATABASE_URL and RABBITMQ_URL to store them)")
    return pinned(Ingress, built_from, weights, sidecar is not None).options(
        num_replicas=i.num_replicas,
        max_ongoing_requests=i.max_ongoing_requests,
        user_config={"max_inflight": i.max_inflight, "max_requests_per_client": i.max_requests_per_client,
                     "request_timeout_s": i.request_timeout_s, "crops_per_part": r.crops_per_part},
        ray_actor_options={"num_cpus": 0},
    ).bind(detector, recognizer, cfg.model_dump(mode="json"), sidecar, archiver)


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for ``serve run deployments.app:build_app config=...`` and for the RayService.

    The RayService names this as its ``import_path`` and passes the whole typed config as ``args``.
    """
    args = dict(args)
    cfg = AppConfig.load(args.pop("config", None), args or None)
    return graph(cfg)


app = graph(AppConfig.load())
