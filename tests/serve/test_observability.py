"""One trace per request across processes and the broker; custom metrics on Ray's Prometheus endpoint; JSON logs."""

import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from kuberay.render import ALERT_RULES
from tests.unit.test_alerts import grouping_labels, rules, selectors
from training.synth import render_lines

from .conftest import free_port

pytestmark = pytest.mark.serve

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def png(lines: list[str]) -> bytes:
    buf = io.BytesIO()
    render_lines(lines, size=26)[0].save(buf, "PNG")
    return buf.getvalue()


def spans_of(span_file, trace_id: str) -> list[dict]:
    if not span_file.exists():
        return []
    return [s for s in map(json.loads, span_file.read_text().splitlines()) if s["trace_id"] == trace_id]


def test_one_trace_from_ingress_to_sql_honouring_traceparent(client, span_file):
    r = client.post("/api/v1/ocr", files={"image": ("t.png", png(["trace me"]), "image/png")},
                    headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    rid = r.json()["request_id"]
    needed = {"ocr.request", "decode", "detect", "crop", "recognize", "ctpn", "crnn", "publish imageDataQueue",
              "consume imageDataQueue", "sql INSERT image, image_box", "publish imageQueue", "consume imageQueue"}
    deadline = time.monotonic() + 60
    while not needed <= {s["name"] for s in spans_of(span_file, TRACE_ID)} and time.monotonic() < deadline:
        time.sleep(0.5)
    spans = spans_of(span_file, TRACE_ID)
    assert needed <= {s["name"] for s in spans}, sorted({s["name"] for s in spans})
    by_id = {s["span_id"]: s for s in spans}

    def one(name: str) -> dict:
        (s,) = [s for s in spans if s["name"] == name and s["attributes"].get("request_id", rid) == rid]
        return s

    def ancestors(span: dict) -> list[str]:
        out = []
        while span.get("parent_id") in by_id:
            span = by_id[span["parent_id"]]
            out.append(span["name"])
        return out

    root = one("ocr.request")
    assert root["attributes"]["http.status_code"] == 200 and root["attributes"]["image.width"] > 0
    assert "ocr.request" in ancestors(one("ctpn")) and "detect" in ancestors(one("ctpn"))
    assert "recognize" in ancestors(one("crnn"))
    for name in ("decode", "crop"):  # CPU work of the ingress runs beside its event loop, still in the trace
        assert one(name)["parent_id"] == root["span_id"]
        assert one(name)["attributes"]["thread.name"].startswith("ingress-cpu"), one(name)
    publish, consume, sql = one("publish imageDataQueue"), one("consume imageDataQueue"), one(
        "sql INSERT image, image_box")
    assert "ocr.request" in ancestors(publish)
    assert consume["parent_id"] == publish["span_id"] and sql["parent_id"] == consume["span_id"]
    # the spans really crossed processes: ingress, detector, recognizer, sidecar, archiver
    assert len({s["pid"] for s in spans}) >= 4
    assert root["service"] == "show-off-ocr"


def test_each_page_of_a_document_read_in_one_request_has_its_own_span_and_the_log_line_lists_them(client, span_file):
    trace_id = "5c0a2f3577b34da6a3ce929d0e0e4737"
    buf = io.BytesIO()
    ims = [render_lines([text], size=26)[0].convert("L") for text in ("first page", "second page")]
    ims[0].save(buf, "TIFF", save_all=True, append_images=ims[1:])
    r = client.post("/api/v1/ocr", params={"pages": "all"}, files={"image": ("two.tif", buf.getvalue())},
                    headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while len([s for s in spans_of(span_file, trace_id) if s["name"] == "decode"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    spans = spans_of(span_file, trace_id)
    (root,) = [s for s in spans if s["name"] == "ocr.request"]
    assert root["attributes"]["pages"] == "all" and root["attributes"]["request_id"] == r.json()["request_id"]
    pages = sorted((s for s in spans if s["name"] == "ocr.page"), key=lambda s: s["attributes"]["page"])
    assert [(s["attributes"]["page"], s["attributes"]["request_id"], s["parent_id"]) for s in pages] == [
        (n, p["request_id"], root["span_id"]) for n, p in enumerate(r.json()["pages"], 1)]
    decodes = [s for s in spans if s["name"] == "decode"]  # each page's work under its own span
    assert sorted(s["parent_id"] for s in decodes) == sorted(s["span_id"] for s in pages)
    assert {s["attributes"]["image.width"] for s in pages} == {im.width for im in ims}
    record = _log_record(r.json()["request_id"])
    assert record["page"] == [1, 2] and record["lines"] == 2 and record["pages"] == 2


def test_a_streamed_document_has_one_trace_that_ends_with_its_stream_and_one_log_line(client, span_file):
    """``format=ndjson`` answers before its pages are read: its span and log line wait for the stream's end."""
    trace_id = "7d1b3f4688c45eb7b4df03ae1f1f5848"
    buf = io.BytesIO()
    ims = [render_lines([text], size=26)[0].convert("L") for text in ("streamed first", "streamed second")]
    ims[0].save(buf, "TIFF", save_all=True, append_images=ims[1:])
    with client.stream("POST", "/api/v1/ocr", params={"pages": "all", "format": "ndjson"},
                       files={"image": ("two.tif", buf.getvalue())},
                       headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}) as r:
        lines = [json.loads(line) for line in r.iter_lines()]
    assert r.status_code == 200 and [next(iter(line)) for line in lines] == ["start", "page", "page", "end"], lines
    deadline = time.monotonic() + 60
    while not [s for s in spans_of(span_file, trace_id) if s["name"] == "ocr.request"] and time.monotonic() < deadline:
        time.sleep(0.5)
    spans = spans_of(span_file, trace_id)
    (root,) = [s for s in spans if s["name"] == "ocr.request"]
    assert root["attributes"]["http.status_code"] == 200
    pages = [s for s in spans if s["name"] == "ocr.page"]
    assert sorted(s["attributes"]["page"] for s in pages) == [1, 2] and {s["parent_id"] for s in pages} == {
        root["span_id"]}
    assert root["end"] >= max(s["end"] for s in pages)  # not ended when the first line went out
    record = _log_record(lines[0]["start"]["request_id"])
    assert record["format"] == "ndjson" and record["page"] == [1, 2] and record["trace_id"] == trace_id


def _log_record(request_id: str) -> dict:
    """The ingress's JSON log line of one request."""
    import glob

    import ray

    logs_dir = ray._private.worker._global_node.get_logs_dir_path()
    deadline, found = time.monotonic() + 30, []
    while not found and time.monotonic() < deadline:
        for path in glob.glob(f"{logs_dir}/serve/replica_*Ingress*.log"):
            found += [ln for ln in open(path, errors="replace") if request_id in ln and '"event": "ocr"' in ln]
        time.sleep(0.5)
    assert found, "no request log line"
    return json.loads(found[0][found[0].index("{\"event\""):].rsplit("}", 1)[0] + "}")


def scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_custom_metrics_reach_prometheus(client, metrics_port):
    for i in range(3):
        r = client.post("/api/v1/ocr", files={"image": ("m.png", png([f"metric {i}"]), "image/png")})
        assert r.status_code == 200
    assert client.post("/api/v1/ocr", files={"image": ("x.txt", b"not an image", "text/plain")}).status_code == 415
    word = client.post("/api/v1/ocr", params={"layout": "word"}, files={"image": ("w.png", png(["word"]), "image/png")})
    assert word.status_code == 200
    as_alto = client.post("/api/v1/ocr", params={"format": "alto"}, files={"image": ("a.png", png(["alto"]))})
    assert as_alto.status_code == 200
    deadline = time.monotonic() + 90
    text = ""
    while time.monotonic() < deadline:
        text = scrape(metrics_port)
        # each process exports on its own clock: wait for the ingress's, the recognizer's, the sidecar's and the
        # archiver's latest figures
        if value(text, "ray_ocr_requests_total", layout="word") >= 1 and "ray_ocr_spool_depth" in text and \
                value(text, "ray_ocr_recognizer_batch_crops_count") >= 1 and "ray_ocr_archiver_lag_seconds" in text:
            break
        time.sleep(2)
    assert value(text, "ray_ocr_requests_total", status="200") >= 3
    assert value(text, "ray_ocr_requests_total", status="200", format="alto") >= 1  # which formats are asked for
    assert value(text, "ray_ocr_requests_total", status="200", format="json") >= 3
    assert value(text, "ray_ocr_requests_total", status="415", code="unsupported_media_type") >= 1
    assert value(text, "ray_ocr_images_total") >= 3
    assert value(text, "ray_ocr_stage_latency_ms_count", stage="detect") >= 3
    assert value(text, "ray_ocr_stage_latency_ms_sum", stage="detect") > 0
    # a word needs no detection: it is counted by layout and has no detect stage
    assert value(text, "ray_ocr_requests_total", status="200", layout="word") >= 1
    assert value(text, "ray_ocr_stage_latency_ms_count", stage="recognize", layout="word") >= 1
    assert value(text, "ray_ocr_stage_latency_ms_count", stage="detect", layout="word") == 0
    assert value(text, "ray_ocr_lines_per_image_count") >= 3
    assert value(text, "ray_ocr_recognizer_batch_crops_count") >= 1
    assert "ray_ocr_spool_depth" in text and "ray_ocr_archiver_lag_seconds" in text
    assert "ray_ocr_spool_oldest_seconds" in text and value(text, "ray_ocr_archiver_connected") == 1
    assert "ray_serve_num_http_requests" in text or "ray_serve_deployment_request_counter" in text


def series(text: str) -> dict[str, list[dict[str, str]]]:
    """Metric name -> the label sets of its samples in a Prometheus scrape."""
    out: dict[str, list[dict[str, str]]] = {}
    for line in text.splitlines():
        if m := re.match(r"^(\w+)\{(.*)\} ", line):
            out.setdefault(m.group(1), []).append(dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2))))
    return out


def test_the_alerts_read_serve_metrics_and_labels_this_ray_exports(client, metrics_port):
    """Serve's own metrics in kuberay/alerts/rules.yaml, as Ray 2.60 exports them (ours: tests/unit/test_alerts.py)."""
    wanted = []  # (alert, metric, label matchers, labels it groups by)
    for rule in rules():
        for name, matchers in selectors(rule["expr"]):
            if name.startswith("ray_serve_"):
                wanted.append((rule["alert"], name, matchers, grouping_labels(rule["expr"])))
    assert len(wanted) >= 2
    r = client.post("/api/v1/ocr", files={"image": ("a.png", png(["alerting"]), "image/png")})
    assert r.status_code == 200

    def missing(found: dict[str, list[dict[str, str]]]) -> list[str]:
        gaps = []
        for alert, name, matchers, by in wanted:
            if not any(all(k in labels and (op != "=" or labels[k] == v) for k, (op, v) in matchers.items())
                       and by - {"le"} <= labels.keys() for labels in found.get(name, [])):
                gaps.append(f"{alert}: {name} {matchers} by {by}")
        return gaps

    deadline = time.monotonic() + 60
    while (gaps := missing(series(scrape(metrics_port)))) and time.monotonic() < deadline:
        time.sleep(2)
    assert not gaps


def test_a_real_prometheus_scrapes_this_ray_and_runs_every_alert_and_dashboard_query(client, metrics_port, tmp_path):
    """Runtime errors (clashing label sets, many-to-many matches) show only against real series, with all the labels
    Ray adds: Prometheus itself scrapes the session's Ray and evaluates the rules and the dashboard's queries."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus (Debian's package) is not installed: run scripts/setup.sh")
    shutil.copy(ALERT_RULES, tmp_path / "rules.yaml")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [rules.yaml]\n"
        f"scrape_configs: [{{job_name: ray, static_configs: [{{targets: ['127.0.0.1:{metrics_port}']}}]}}]\n")
    port = free_port()
    proc = subprocess.Popen([prometheus, "--config.file=prometheus.yml", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        for i in range(3):  # answers while it scrapes, so that the rates have samples
            r = client.post("/api/v1/ocr", files={"image": ("p.png", png([f"prometheus {i}"]), "image/png")})
            assert r.status_code == 200
            time.sleep(1)
        deadline, evaluated = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            try:
                groups = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
                # a rule not yet evaluated has the zero time
                evaluated = [r for g in groups for r in g["rules"] if not r["lastEvaluation"].startswith("0001")]
                up = httpx.get(f"{api}/query", params={"query": "sum(ray_ocr_requests_total)"}, timeout=5).json()
            except httpx.HTTPError:
                time.sleep(1)
                continue
            if len(evaluated) == len(rules()) and up["data"]["result"]:
                break
            time.sleep(1)
        assert {r["name"] for r in evaluated} == {r["alert"] for r in rules()}
        assert [(r["name"], r["health"], r.get("lastError")) for r in evaluated if r["health"] != "ok"] == []
        assert float(up["data"]["result"][0]["value"][1]) >= 3  # it reads our series
        # and every query of the Grafana dashboard runs on these series
        dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs/grafana/show-off-ocr.json").read_text())
        for expr in (t["expr"] for p in dashboard["panels"] for t in p["targets"]):
            answer = httpx.get(f"{api}/query", params={"query": expr}, timeout=10).json()
            assert answer["status"] == "success", (expr, answer)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_one_json_log_line_per_request_without_text(client):
    r = client.post("/api/v1/ocr", files={"image": ("l.png", png(["secret words"]), "image/png")})
    record = _log_record(r.json()["request_id"])
    assert record["status"] == 200 and record["trace_id"] and record["timings"]["detect_ms"] > 0
    assert "secret" not in json.dumps(record)
