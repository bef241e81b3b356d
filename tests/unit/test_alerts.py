"""The alerting rules (kuberay/alerts/rules.yaml): Prometheus loads them, promtool's own unit tests show each alert
firing and staying quiet, and they read only metrics, labels and values the service exports. The live check of
Serve's own metrics is in tests/serve/test_observability.py."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kuberay.render import ALERT_RULES, POD_LABELS, monitoring, rayservice
from serve_app.config import AppConfig

REPO = Path(__file__).resolve().parents[2]
RULES_TEST = ALERT_RULES.with_name("rules_test.yaml")
SELECTOR = re.compile(r"\b(ray_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|on)\s*\(([^)]*)\)")
SERVE_TAGS = {"application", "deployment", "replica"}  # Serve adds these to every metric a replica records


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERT_RULES.read_text())["groups"] for r in g["rules"]]


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Each metric an expression reads, with its label matchers: ``(name, {label: (operator, value)})``."""
    return [(name, {k: (op, v) for k, op, v in MATCHER.findall(body or "")}) for name, body in SELECTOR.findall(expr)]


def grouping_labels(expr: str) -> set[str]:
    return {label.strip() for group in GROUPING.findall(expr) for label in group.split(",") if label.strip()}


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool (Debian's prometheus package) is not installed: run scripts/setup.sh")
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_prometheus_loads_the_rules_and_they_pass_their_promtool_tests():
    checked = run_promtool("check", "rules", ALERT_RULES.name, cwd=ALERT_RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run_promtool("test", "rules", RULES_TEST.name, cwd=ALERT_RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_promtool_tests_catch_a_rule_that_fires_too_late(tmp_path):
    loose = ALERT_RULES.read_text().replace("/ sum(rate(ray_ocr_requests_total[5m])) > 0.02",
                                            "/ sum(rate(ray_ocr_requests_total[5m])) > 0.05")
    assert loose != ALERT_RULES.read_text()
    (tmp_path / ALERT_RULES.name).write_text(loose)
    shutil.copy(RULES_TEST, tmp_path)
    tested = run_promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert tested.returncode != 0 and "alertname: OCRServerErrors" in tested.stdout + tested.stderr


def test_every_alert_is_shown_firing_and_quiet():
    fired, quiet = set(), set()
    for case in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) >= 10
    assert fired == quiet == set(names)
    assert {r["labels"]["severity"] for r in rules()} == {"page", "warning"}
    assert all(r["annotations"].get("summary") and r["annotations"].get("description") for r in rules())


def test_the_rules_read_only_our_metrics_labels_and_values():
    """Our ``ray_ocr_*`` metrics as deployments/metrics.py defines them (Ray adds the ``ray_`` prefix)."""
    from deployments import metrics

    defined = {m.info["name"]: m for m in [*metrics.ingress().values(), *metrics.storage().values(),
                                           metrics.recognizer(), metrics.detector()]}
    histograms = {name for name, m in defined.items() if type(m).__name__ == "Histogram"}
    sources = "".join(p.read_text() for p in (REPO / "deployments").glob("*.py"))
    ours = 0
    for rule in rules():
        keys: set[str] = set()
        for name, matchers in selectors(rule["expr"]):
            if not name.startswith("ray_ocr_"):
                continue
            ours += 1
            base = name.removeprefix("ray_")
            bucket = base.endswith("_bucket") and base.removesuffix("_bucket") in histograms
            base = base.removesuffix("_bucket") if bucket else base
            assert base in defined, f"{rule['alert']}: {name} is not a metric we export"
            tag_keys = set(defined[base].info["tag_keys"]) | SERVE_TAGS | ({"le"} if bucket else set())
            assert set(matchers) <= tag_keys, f"{rule['alert']}: {name} has no label {set(matchers) - tag_keys}"
            keys |= tag_keys
            for label, (op, value) in matchers.items():
                if label == "status":  # HTTP statuses, matched by pattern
                    continue
                for v in value.split("|") if op in ("=~", "!~") else [value]:
                    assert f'"{v}"' in sources, f"{rule['alert']}: no {label}={v!r} is ever recorded"
        if keys:
            assert grouping_labels(rule["expr"]) <= keys, rule["alert"]
    assert ours >= 10


def test_the_cluster_scrapes_every_ray_pod_and_loads_the_rules():
    cfg = AppConfig.load(REPO / "kuberay" / "cluster.yaml", {"cluster": {"monitoring_labels": {"release": "kps"}}})
    pod_monitor, rule = monitoring(cfg)
    assert (pod_monitor["kind"], rule["kind"]) == ("PodMonitor", "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERT_RULES.read_text())
    for obj in (pod_monitor, rule):  # kube-prometheus-stack selects monitors and rules by its release label
        assert obj["metadata"]["labels"]["release"] == "kps" and obj["metadata"]["namespace"] == cfg.cluster.namespace
    selector = pod_monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = pod_monitor["spec"]["podMetricsEndpoints"]
    spec = rayservice(cfg)["spec"]["rayClusterConfig"]
    templates = [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    assert len(templates) >= 2
    for template in templates:  # the head and every worker group: the replicas export from the workers
        assert selector.items() <= template["metadata"]["labels"].items() and selector == POD_LABELS
        (container,) = template["spec"]["containers"]
        assert {"containerPort": 8080, "name": endpoint["port"]} in container["ports"]
