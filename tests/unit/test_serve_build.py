"""`serve build` output comes from the typed config: change a value there and it shows up in the Serve config."""

import os
import subprocess
import sys
from pathlib import Path

import yaml


def serve_build(tmp_path: Path, config_yaml: str | None) -> dict:
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("OCR_CONFIG", None)
    if config_yaml is not None:
        (tmp_path / "cfg.yaml").write_text(config_yaml)
        env["OCR_CONFIG"] = str(tmp_path / "cfg.yaml")
    out = tmp_path / "serve.yaml"
    serve = Path(sys.executable).parent / "serve"
    proc = subprocess.run([str(serve), "build", "deployments.app:app", "-o", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {d["name"]: d for d in yaml.safe_load(out.read_text())["applications"][0]["deployments"]}


def test_serve_build_reflects_the_typed_config(tmp_path):
    default = serve_build(tmp_path, None)
    assert default["Recognizer"]["autoscaling_config"]["max_replicas"] == 2
    assert default["Detector"]["user_config"] == {"max_batch_size": 4, "batch_wait_timeout_s": 0.01}
    assert default["Detector"]["num_replicas"] == 1 and "autoscaling_config" not in default["Detector"]
    # the models' replicas are routed to by ours, which shares a page's parts evenly; the rest by Serve's
    for name in ("Detector", "Recognizer"):
        assert default[name]["request_router_config"]["request_router_class"] == "deployments.routing:SpreadRouter"
    assert "request_router_config" not in default["Ingress"]
    changed = serve_build(
        tmp_path, "recognizer:\n  autoscaling:\n    max_replicas: 7\n  crops_per_part: 12\n"
        "detector:\n  max_batch_size: 6\n"
        "  autoscaling: {max_replicas: 3, look_back_period_s: 10}\ningress:\n  request_timeout_s: 30\n"
    )
    assert changed["Recognizer"]["autoscaling_config"]["max_replicas"] == 7
    assert changed["Detector"]["user_config"]["max_batch_size"] == 6
    scaling = changed["Detector"]["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["look_back_period_s"]) == (1, 3, 10)
    assert "num_replicas" not in changed["Detector"]  # Serve refuses both
    # the ingress splits a page's crops, so a recognizer's crops_per_part is its live setting
    assert changed["Ingress"]["user_config"] == {"max_inflight": 32, "max_requests_per_client": 32,
                                                 "request_timeout_s": 30.0, "crops_per_part": 12}
