"""The live batch settings of the model deployments' `serve.batch` methods, from their ``user_config``."""

from __future__ import annotations

from typing import Any


def configure(user_config: dict[str, Any], *methods: Any) -> None:
    """Set each method's batch size and wait without a restart.

    ``Any``: the setters live on `serve.batch`'s wrapper, which Serve's type hints do not show.
    """
    for method in methods:
        method.set_max_batch_size(int(user_config["max_batch_size"]))
        method.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))
