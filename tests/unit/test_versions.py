"""Deployment versions: equal where a redeploy may keep a replica, different wherever it must not."""

import os
import shutil

import pytest
from ray.serve._private.build_app import build_app

from deployments import versions
from deployments.app import graph
from serve_app.config import AppConfig, resolve_weights

STORAGE_ON = {"storage": {"mode": "on", "database_url": "postgresql://x@h/d", "rabbitmq_url": "amqp://g:g@h/"}}


def deployed_versions(overrides: dict | None = None) -> dict[str, str | None]:
    overrides = dict(overrides or {})
    overrides["storage"] = {**STORAGE_ON["storage"], **overrides.get("storage", {})}
    cfg = AppConfig.load(overrides=overrides)
    return {d.name: d._version for d in build_app(graph(cfg), name="ocr").deployments}


def changed(before: dict[str, str | None], after: dict[str, str | None]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_every_deployment_gets_a_version_and_building_twice_gives_the_same():
    first = deployed_versions()
    assert set(first) == {"Detector", "Recognizer", "Ingress", "Sidecar", "Archiver"}
    assert all(isinstance(v, str) and len(v) == 16 for v in first.values())
    assert deployed_versions() == first


@pytest.mark.parametrize("overrides", [
    {"detector": {"max_batch_size": 8, "batch_wait_timeout_s": 0.5, "num_replicas": 2}},
    {"detector": {"autoscaling": {"min_replicas": 1, "max_replicas": 3}}},
    {"recognizer": {"max_batch_size": 3, "autoscaling": {"max_replicas": 5}, "max_ongoing_requests": 4}},
    {"ingress": {"max_inflight": 2, "request_timeout_s": 5, "num_replicas": 3}},
])
def test_settings_that_reach_replicas_live_keep_every_version(overrides):
    assert changed(deployed_versions(), deployed_versions(overrides)) == set()


@pytest.mark.parametrize("overrides, restarted", [
    ({"detector": {"detection": {"score_threshold": 0.5}}}, {"Detector", "Ingress"}),
    ({"detector": {"threads": 1}}, {"Detector", "Ingress"}),
    ({"recognizer": {"lexicon_margin": 2.0}}, {"Recognizer", "Ingress"}),
    ({"ingress": {"retry_after_s": 3}}, {"Ingress"}),
    ({"storage": {"retention_days": 3}}, {"Sidecar", "Archiver", "Ingress"}),
])
def test_settings_read_at_start_change_the_versions_of_the_replicas_that_read_them(overrides, restarted):
    """The ingress holds the whole config (it cuts crops and reports the models), so it restarts with any of them."""
    assert changed(deployed_versions(), deployed_versions(overrides)) == restarted


def test_new_weights_at_the_same_path_restart_the_model_and_the_ingress(tmp_path):
    weights = tmp_path / "ctpn.pt"
    shutil.copy(resolve_weights(AppConfig().detector.weights), weights)
    before = deployed_versions({"detector": {"weights": str(weights)}})
    os.utime(weights, ns=(1, 1))  # a retrained file: same path, new modification time
    assert changed(before, deployed_versions({"detector": {"weights": str(weights)}})) == {"Detector", "Ingress"}


def test_changed_source_changes_every_version(monkeypatch):
    before = deployed_versions()
    monkeypatch.setattr(versions, "source_fingerprint", lambda: "edited")
    assert changed(before, deployed_versions()) == set(before)
