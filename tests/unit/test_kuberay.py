"""Cluster manifests, checked offline and strictly: CRD schema, Serve schema, Kubernetes schemas, the workflow,
the Dockerfile; and the deploy sequence against a fake Kubernetes API server."""

import copy
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes import client
from ray.serve.schema import ServeDeploySchema

from kuberay.deploy import DeployError, deploy
from kuberay.render import MANIFESTS, core_objects, rayservice, render
from serve_app.config import AppConfig, WorkerGroupSettings

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "kuberay" / "cluster.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def cfg():
    return AppConfig.load(CLUSTER)


@pytest.fixture(scope="module")
def crd_schema(shared_dir=REPO.parent / "shared"):
    import os

    path = Path(os.environ.get("OCR_SHARED_DIR", shared_dir)) / "kuberay" / "ray.io_rayservices.yaml"
    crd = yaml.safe_load(path.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def test_committed_manifests_are_exactly_what_render_produces(cfg):
    for name, text in render(cfg).items():
        stale = f"{name} is stale: run python -m kuberay render --config {CLUSTER}"
        assert (MANIFESTS / name).read_text() == text, stale


def test_rayservice_validates_against_the_crd_and_serve_schema(cfg, crd_schema):
    obj = yaml.safe_load((MANIFESTS / "rayservice.yaml").read_text())
    jsonschema.validate(obj, crd_schema)
    serve_cfg = yaml.safe_load(obj["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_cfg)
    (app,) = serve_cfg["applications"]
    assert app["import_path"] == "deployments.app:build_app"
    assert {d["name"] for d in app["deployments"]} == {"Ingress", "Detector", "Recognizer", "Sidecar", "Archiver"}
    assert app["args"]["storage"]["database_url"] is None  # secrets come from the pod environment
    assert obj["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    broken = copy.deepcopy(obj)
    broken["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplicas"] = "one"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schema)


def test_core_objects_validate_against_kubernetes_schemas():
    objects = [o for name in ("app.yaml", "infra.yaml") for o in yaml.safe_load_all((MANIFESTS / name).read_text())]
    kinds = {o["kind"] for o in objects}
    assert {"Namespace", "Secret", "StatefulSet", "Service", "Ingress", "PersistentVolumeClaim", "Deployment"} <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, "1.31", strict=True)
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    assert ingress["spec"]["tls"] and "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]
    bad = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"}, "spec": {"replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.31", strict=True)


def test_a_config_change_reaches_the_rendered_rayservice(cfg):
    changed = cfg.model_copy(update={"recognizer": cfg.recognizer.model_copy(update={
        "autoscaling": cfg.recognizer.autoscaling.model_copy(update={"max_replicas": 9})})})
    serve_cfg = yaml.safe_load(rayservice(changed)["spec"]["serveConfigV2"])
    (rec,) = [d for d in serve_cfg["applications"][0]["deployments"] if d["name"] == "Recognizer"]
    assert rec["autoscaling_config"]["max_replicas"] == 9
    assert "autoscaling" not in serve_cfg["applications"][0]["args"]["recognizer"]  # written once, where Serve reads it


def test_the_clusters_detector_autoscales_with_its_pods(cfg):
    """One detector replica detected no faster than one pod however many the cluster added (cluster.yaml)."""
    serve_cfg = yaml.safe_load(rayservice(cfg)["spec"]["serveConfigV2"])
    (det,) = [d for d in serve_cfg["applications"][0]["deployments"] if d["name"] == "Detector"]
    assert det["autoscaling_config"]["max_replicas"] == cfg.detector.autoscaling.max_replicas > 1
    pods, rec = cfg.cluster.cpu_workers, cfg.recognizer
    at_most = det["autoscaling_config"]["max_replicas"] * cfg.detector.num_cpus \
        + rec.autoscaling.max_replicas * rec.num_cpus
    assert at_most <= pods.max_replicas * float(pods.cpu)  # every replica the maxima ask for has a pod to run in
    # and none shares cores it counts on: two 2-thread detectors in one 2-CPU pod answered at half the pace
    assert cfg.detector.num_cpus >= cfg.detector.threads and rec.num_cpus >= rec.threads
    assert det["ray_actor_options"]["num_cpus"] == cfg.detector.num_cpus <= float(pods.cpu)
    assert "num_replicas" not in det and "autoscaling" not in serve_cfg["applications"][0]["args"]["detector"]


def test_a_model_given_gpus_runs_on_the_gpu_workers_and_one_without_gpu_pods_is_refused(cfg):
    """Serve would wait forever for a GPU that no pod has: the render says so instead."""
    gpu = cfg.model_copy(update={
        "detector": cfg.detector.model_copy(update={"num_gpus": 1.0}),
        "recognizer": cfg.recognizer.model_copy(update={"num_gpus": 0.25}),
        "cluster": cfg.cluster.model_copy(update={"gpu_workers": WorkerGroupSettings(gpu=1, max_replicas=2)})})
    obj = rayservice(gpu)
    deployments = {d["name"]: d for d in yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"][0]["deployments"]}
    assert deployments["Detector"]["ray_actor_options"]["num_gpus"] == 1.0
    assert deployments["Recognizer"]["ray_actor_options"]["num_gpus"] == 0.25
    assert deployments["Ingress"]["ray_actor_options"].get("num_gpus", 0) == 0
    groups = {g["groupName"]: g for g in obj["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
    (container,) = groups["gpu"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu.detector.runner_args()["device"] == "cuda" and cfg.detector.runner_args()["device"] == "cpu"
    with pytest.raises(ValueError, match=r"detector\.num_gpus is 1, but the GPU worker pods have 0"):
        rayservice(gpu.model_copy(update={"cluster": cfg.cluster}))
    with pytest.raises(ValueError, match=r"recognizer\.num_gpus is 2, but the GPU worker pods have 1"):
        rayservice(gpu.model_copy(update={"recognizer": cfg.recognizer.model_copy(update={"num_gpus": 2.0})}))


def _nginx(cfg: AppConfig) -> dict[str, str]:
    (ingress,) = [o for o in core_objects(cfg)["app.yaml"] if o["kind"] == "Ingress"]
    return {k.rsplit("/", 1)[1]: v for k, v in ingress["metadata"]["annotations"].items() if "nginx" in k}


def test_nginx_never_refuses_an_upload_or_gives_up_on_an_answer_before_the_ingress_would(cfg):
    """nginx answers past its own limits with HTML of its own (its default body limit, 1 MiB, refuses most photos):
    they follow the ingress settings, so raising the upload limit or the deadline in the config raises them too."""
    assert _nginx(cfg) == {"proxy-body-size": "11m", "proxy-read-timeout": "330", "proxy-send-timeout": "330"}
    bigger = cfg.model_copy(update={"ingress": cfg.ingress.model_copy(update={
        "max_upload_bytes": 30 * 2**20, "request_timeout_s": 120.5, "document_timeout_s": 100})})
    assert _nginx(bigger) == {"proxy-body-size": "31m", "proxy-read-timeout": "151", "proxy-send-timeout": "151"}
    longer = cfg.model_copy(update={"ingress": cfg.ingress.model_copy(update={"document_timeout_s": 600})})
    assert _nginx(longer)["proxy-read-timeout"] == "630"  # a whole document's deadline, read in one request


def _code_version(cfg: AppConfig, **sections: dict) -> str:
    """Serve's own version of the rendered application: a new one restarts every replica of it."""
    from ray.serve._private.deploy_utils import get_app_code_version
    from ray.serve.schema import ServeApplicationSchema

    changed = cfg.model_copy(update={k: getattr(cfg, k).model_copy(update=v) for k, v in sections.items()})
    (app,) = yaml.safe_load(rayservice(changed)["spec"]["serveConfigV2"])["applications"]
    return get_app_code_version(ServeApplicationSchema.model_validate(app))


def test_a_live_setting_changed_in_the_rayservice_reconfigures_replicas_and_a_model_setting_restarts_them(cfg):
    """KubeRay applies a serveConfigV2 change to the running cluster; Serve then restarts every replica if the
    application's version (import path, args) changed, and only reconfigures them otherwise."""
    base = _code_version(cfg)
    for live in ({"ingress": {"max_inflight": 3, "request_timeout_s": 9.0, "num_replicas": 5}},
                 {"detector": {"max_batch_size": 9, "batch_wait_timeout_s": 0.5}},
                 {"recognizer": {"max_batch_size": 2, "max_ongoing_requests": 3}}):
        assert _code_version(cfg, **live) == base, live
    for read_at_start in ({"ingress": {"retry_after_s": 4}}, {"detector": {"threads": 1}},
                          {"recognizer": {"lexicon_margin": 1.5}}):
        assert _code_version(cfg, **read_at_start) != base, read_at_start


def test_workflow_and_dockerfile_pass_their_linters():
    wf = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                         str(REPO / ".github/workflows/ci-cd.yaml")], capture_output=True, text=True, timeout=120)
    assert wf.returncode == 0, wf.stdout + wf.stderr
    argo = yaml.safe_load((REPO / "kuberay/argocd/application.yaml").read_text())
    assert argo["spec"]["source"]["path"] == "kuberay/manifests"
    lint = subprocess.run([str(BIN / "hadolint"), str(REPO / "Dockerfile.arm64")], capture_output=True, text=True,
                          timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr


class FakeKube:
    """Just enough of the Kubernetes API for RayService custom objects, recording every call."""

    def __init__(self, existing: dict | None, ready_after: int | None) -> None:
        self.obj, self.ready_after, self.calls, self.gets = existing, ready_after, [], 0
        self.version = 1

    def handler(self):
        fake = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

            def _handle(self, method):
                url = urlparse(self.path)
                dry = parse_qs(url.query).get("dryRun") == ["All"]
                fake.calls.append(f"{method}{' dry' if dry else ''}")
                if method == "GET":
                    if fake.obj is None:
                        return self._send(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    fake.gets += 1
                    if fake.ready_after is not None and fake.gets > fake.ready_after:
                        fake.obj["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
                    return self._send(200, fake.obj)
                if method == "DELETE":
                    fake.obj = None
                    return self._send(200, {"kind": "Status", "status": "Success"})
                body = self._body()
                assert body["kind"] == "RayService" and body["apiVersion"] == "ray.io/v1"
                if not dry:
                    fake.version += 1
                    body["metadata"]["resourceVersion"] = str(fake.version)
                    body["metadata"]["generation"] = fake.version
                    fake.obj = body
                    fake.gets = 0
                self._send(201 if method == "POST" else 200, body)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_DELETE(self):
                self._handle("DELETE")

        return H


@pytest.fixture
def fake_kube():
    servers = []

    def start(existing=None, ready_after=None):
        fake = FakeKube(existing, ready_after)
        server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        conf = client.Configuration(host=f"http://127.0.0.1:{server.server_port}")
        return fake, client.ApiClient(conf)

    yield start
    for s in servers:
        s.shutdown()


def test_deploy_dry_runs_applies_waits_and_prints_the_endpoint(cfg, fake_kube):
    fake, api = fake_kube(existing=None, ready_after=2)
    endpoint = deploy(cfg, api, timeout_s=10, poll_s=0.01, log=lambda *_: None)
    assert cfg.cluster.host in endpoint
    assert fake.calls[:3] == ["GET", "POST dry", "POST"]
    assert fake.calls[3:] == ["GET"] * 3  # polled until Ready
    assert yaml.safe_load(fake.obj["spec"]["serveConfigV2"])["applications"][0]["name"] == cfg.name


def test_deploy_rolls_back_to_the_previous_config_when_not_ready(cfg, fake_kube):
    old = rayservice(cfg)
    old["spec"]["serveConfigV2"] = "applications: []\n"
    old["metadata"].update({"resourceVersion": "1", "generation": 1})
    fake, api = fake_kube(existing=copy.deepcopy(old), ready_after=None)
    with pytest.raises(DeployError, match="rolled back"):
        deploy(cfg, api, timeout_s=0.3, poll_s=0.05, log=lambda *_: None)
    assert fake.calls[:3] == ["GET", "PUT dry", "PUT"] and fake.calls[-1] == "PUT"
    assert fake.obj["spec"]["serveConfigV2"] == "applications: []\n"  # the previous spec is back


def test_deploy_with_no_previous_object_removes_the_failed_one(cfg, fake_kube):
    fake, api = fake_kube(existing=None, ready_after=None)
    with pytest.raises(DeployError):
        deploy(cfg, api, timeout_s=0.2, poll_s=0.05, log=lambda *_: None)
    assert fake.calls[-1] == "DELETE" and fake.obj is None
