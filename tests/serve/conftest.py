"""One Ray instance and one Serve app for the whole test session: the shipped weights, storage on (a fresh
database and vhost on the real local PostgreSQL and RabbitMQ)."""

import os
import socket
import tempfile

import httpx
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray
from ray import serve

from deployments.app import graph
from serve_app.config import AppConfig

APP = "ocr"
TEST_OVERRIDES = {
    "ingress": {"max_upload_bytes": 2 * 1024 * 1024, "max_pixels": 8_000_000},
    # a longer batch window makes grouping of concurrent requests certain on a busy 2-core machine
    "detector": {"max_batch_size": 4, "batch_wait_timeout_s": 0.2},
    "recognizer": {"autoscaling": {"min_replicas": 1, "max_replicas": 1}},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_config() -> AppConfig:
    return AppConfig.load(overrides=TEST_OVERRIDES)


@pytest.fixture(scope="session")
def storage_dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("images"), tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="session")
def serve_url(app_config, pg_url, session_amqp_url, storage_dirs):
    # replicas inherit the driver's environment: this is how a deployment gets its connection settings
    os.environ["DATABASE_URL"], os.environ["RABBITMQ_URL"] = pg_url, session_amqp_url
    os.environ["OCR_IMAGE_DIR"], os.environ["OCR_SPOOL_DIR"] = map(str, storage_dirs)
    port = free_port()
    ray.init(
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"),
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})
    serve.run(graph(app_config), name=APP, route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()
    for key in ("DATABASE_URL", "RABBITMQ_URL", "OCR_IMAGE_DIR", "OCR_SPOOL_DIR"):
        os.environ.pop(key, None)


@pytest.fixture(scope="session")
def client(serve_url):
    with httpx.Client(base_url=serve_url, timeout=120) as c:
        yield c
