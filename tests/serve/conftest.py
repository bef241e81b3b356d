"""One Ray instance and one Serve app for the whole test session: the shipped weights, storage on (a fresh
database and vhost on the real local PostgreSQL and RabbitMQ)."""

import os
import random
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
    # a body that stalls is refused after 5 s (20 by default), a PDF page after 3 s (10), so that their tests are short
    "ingress": {"max_upload_bytes": 2 * 1024 * 1024, "max_pixels": 8_000_000, "body_grace_s": 5, "pdf_timeout_s": 3},
    # a longer batch window makes grouping of concurrent requests certain on a busy 2-core machine
    "detector": {"max_batch_size": 4, "batch_wait_timeout_s": 0.2},
    # a 4-line page counts as "many crops" so the lone-page threads are tested on small, fast pages
    "recognizer": {"autoscaling": {"min_replicas": 1, "max_replicas": 1}, "many_crops": 4},
}


def free_port() -> int:
    """A free port between Ray's worker ports (10002-19999) and the kernel's ephemeral ones (32768 up), where no
    process that asks the kernel for any free port (as Ray's agents do) can be given it after we let it go."""
    rng = random.SystemRandom()
    for _ in range(100):
        port = rng.randrange(20_000, 32_768)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


def replicas(app: str = APP) -> dict[str, set[str]]:
    """Live replica actors of ``app`` by deployment. A replica kept through a redeploy keeps its actor name."""
    out: dict[str, set[str]] = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        parts = actor["name"].removeprefix("SERVE_REPLICA::").split("#")
        if len(parts) == 3 and parts[0] == app:
            out.setdefault(parts[1], set()).add(actor["name"])
    return out


@pytest.fixture(scope="session")
def app_config() -> AppConfig:
    return AppConfig.load(overrides=TEST_OVERRIDES)


@pytest.fixture(scope="session")
def storage_dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("images"), tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="session")
def span_file(tmp_path_factory):
    return tmp_path_factory.mktemp("traces") / "spans.jsonl"


@pytest.fixture(scope="session")
def metrics_port():
    return free_port()


@pytest.fixture(scope="session")
def serve_url(app_config, pg_url, session_amqp_url, storage_dirs, span_file, metrics_port):
    # replicas inherit the driver's environment: this is how a deployment gets its connection settings,
    # and how Ray Serve's tracing finds our exporter (JSON lines in a file every process appends to)
    env = {"DATABASE_URL": pg_url, "RABBITMQ_URL": session_amqp_url, "OCR_IMAGE_DIR": str(storage_dirs[0]),
           "OCR_SPOOL_DIR": str(storage_dirs[1]), "OCR_TRACE_FILE": str(span_file),
           **app_config.telemetry.model_copy(update={"exporter": "file"}).environment("test")}
    os.environ.update(env)
    ray.init(
        num_cpus=4,
        _metrics_export_port=metrics_port,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"),
        # replicas export metrics every 2 s instead of 10: tests that wait for a counter wait less
        _system_config={"metrics_report_interval_ms": 2000},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})
    serve.run(graph(app_config), name=APP, route_prefix="/")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()
    for key in env:
        os.environ.pop(key, None)


@pytest.fixture(scope="session")
def client(serve_url):
    with httpx.Client(base_url=serve_url, timeout=120) as c:
        yield c
