"""Run the app in one container without a cluster: ``python -m deployments.standalone`` (the image's CMD).

`serve run` binds 127.0.0.1; a container must listen on all interfaces, which needs `serve.start` options.
"""

from __future__ import annotations

import os

import ray
from ray import serve

from deployments.app import build_app
from serve_app.config import AppConfig


def main() -> None:
    cfg = AppConfig.load()
    ray.init()
    host, port = os.environ.get("OCR_HOST", "0.0.0.0"), int(os.environ.get("OCR_PORT", "8000"))
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app({}), name=cfg.name, route_prefix=cfg.route_prefix, blocking=True)


if __name__ == "__main__":
    main()
