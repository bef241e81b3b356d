"""Render every Kubernetes manifest from the one typed config; ``serveConfigV2`` is built, never hand-written.

    python -m kuberay render                       # write kuberay/manifests/ from the defaults (or OCR_CONFIG)
    python -m kuberay render --config prod.yaml --out /tmp/manifests
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from deployments import body_limits
from serve_app import __version__
from serve_app.config import AppConfig

MANIFESTS = Path(__file__).with_name("manifests")


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (``serveConfigV2``) as readable literal blocks; shared values written out, not aliased."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
RAY_VERSION = "2.60.0"
STORAGE_SECRET = "ocr-storage"
API_KEYS_SECRET = "ocr-api-keys"
IMAGES_PVC = "ocr-images"
#: On every Ray pod (head and workers), for the PodMonitor: KubeRay keeps labels it does not own.
POD_LABELS = {"app.kubernetes.io/part-of": "show-off-ocr"}
METRICS_PORT = {"containerPort": 8080, "name": "metrics"}  # Ray's metrics agent on each node (KubeRay's default)
ALERT_RULES = Path(__file__).with_name("alerts") / "rules.yaml"


def serve_config(cfg: AppConfig) -> dict[str, Any]:
    """The Serve config (``serveConfigV2``): one application built from the same graph `serve run` builds."""
    from ray.serve._private.build_app import build_app  # what `serve build` uses
    from ray.serve.deployment import deployment_to_schema
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    from deployments.app import LIVE_SETTINGS, graph

    cluster_cfg = cfg.model_copy(update={"storage": cfg.storage.model_copy(update={
        "mode": "on", "image_dir": Path("/data/images"), "spool_dir": Path("/data/spool")})})
    built = build_app(graph(cluster_cfg), name=cfg.name)

    app = ServeApplicationSchema(
        name=cfg.name,
        route_prefix=cfg.route_prefix,
        import_path="deployments.app:build_app",
        # live settings travel only in `deployments` (user_config, replica counts): Serve versions a config deploy
        # by its args, so a change there would restart every replica, a change of those only reconfigures them
        args=cluster_cfg.model_dump(mode="json", exclude={"cluster": True, "telemetry": True, **LIVE_SETTINGS}),
        runtime_env={},
        deployments=[deployment_to_schema(d) for d in built.deployments],
    ).model_dump(exclude_unset=True, mode="json")
    config = {"applications": [app], "http_options": {"host": "0.0.0.0", "port": 8000}}
    ServeDeploySchema.model_validate(config)
    return config


def _container(cfg: AppConfig, name: str, cpu: str, memory: str, gpu: int = 0) -> dict[str, Any]:
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpu:
        limits["nvidia.com/gpu"] = gpu
    return {
        "name": name,
        "image": cfg.cluster.image,
        "imagePullPolicy": "IfNotPresent",
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits},
        "env": [
            {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": STORAGE_SECRET, "key": "database-url"}}},
            {"name": "RABBITMQ_URL", "valueFrom": {"secretKeyRef": {"name": STORAGE_SECRET, "key": "rabbitmq-url"}}},
            # the API behind the public Ingress asks for one of these keys (deployments/api_keys.py)
            {"name": "OCR_API_KEYS", "valueFrom": {"secretKeyRef": {"name": API_KEYS_SECRET, "key": "keys"}}},
            {"name": "OCR_IMAGE_DIR", "value": "/data/images"},
            {"name": "OCR_SPOOL_DIR", "value": "/data/spool"},
            {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
            *({"name": k, "value": v} for k, v in cfg.telemetry.environment(__version__).items()),
        ],
        "volumeMounts": [{"name": "images", "mountPath": "/data"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "allowPrivilegeEscalation": False},
    }


def _pod(cfg: AppConfig, container: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"labels": POD_LABELS},
            "spec": {"containers": [container],
                     "volumes": [{"name": "images", "persistentVolumeClaim": {"claimName": IMAGES_PVC}}]}}


def _worker_group(cfg: AppConfig, name: str, w: Any) -> dict[str, Any]:
    return {
        "groupName": name,
        "replicas": w.min_replicas,
        "minReplicas": w.min_replicas,
        "maxReplicas": w.max_replicas,
        "rayStartParams": {},
        "template": _pod(cfg, {**_container(cfg, "ray-worker", w.cpu, w.memory, w.gpu), "ports": [METRICS_PORT]}),
    }


def _gpus_fit(cfg: AppConfig) -> None:
    """A model given GPUs needs worker pods that have them: else its replicas wait forever, unscheduled."""
    gpu_pod = cfg.cluster.gpu_workers.gpu if cfg.cluster.gpu_workers is not None else 0
    for name, wanted in (("detector", cfg.detector.num_gpus), ("recognizer", cfg.recognizer.num_gpus)):
        if wanted > gpu_pod:
            raise ValueError(f"{name}.num_gpus is {wanted:g}, but the GPU worker pods have {gpu_pod} "
                             "(cluster.gpu_workers.gpu): no pod could run its replicas")


def rayservice(cfg: AppConfig) -> dict[str, Any]:
    _gpus_fit(cfg)
    c = cfg.cluster
    head = _container(cfg, "ray-head", c.head_cpu, c.head_memory)
    head["ports"] = [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"},
                     {"containerPort": 10001, "name": "client"}, {"containerPort": 8000, "name": "serve"},
                     METRICS_PORT]
    groups = [_worker_group(cfg, "cpu", c.cpu_workers)]
    if c.gpu_workers is not None:
        groups.append(_worker_group(cfg, "gpu", c.gpu_workers))
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": c.name, "namespace": c.namespace,
                     "labels": {"app.kubernetes.io/name": "show-off-ocr", "app.kubernetes.io/version": __version__}},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(cfg), sort_keys=False),
            "upgradeStrategy": {"type": "NewCluster"},  # zero-downtime: traffic moves when the new cluster is ready
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": True,  # Serve autoscaling asks for replicas; the autoscaler adds pods
                "autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 120},
                "headGroupSpec": {"rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                                  "template": _pod(cfg, head)},
                "workerGroupSpecs": groups,
            },
        },
    }


#: How much longer nginx waits for an answer than the ingress takes to give up on one (its JSON 504 with
#: Retry-After; a document read in one request has longer), so that a client behind nginx gets that answer, not
#: nginx's own HTML 504 at its default 60 s.
NGINX_ANSWER_MARGIN_S = 30


def nginx_limits(cfg: AppConfig) -> dict[str, str]:
    """The Ingress's body and time limits, from the ingress settings they must not undercut.

    nginx refuses a body past ``proxy-body-size`` with an HTML 413 of its own, and its default (1 MiB) would refuse
    most photos: it is the largest body the ingress takes, rounded up to a MiB. Written once, here, from the same
    config as the Serve application, so that raising ``ingress.max_upload_bytes`` raises both.
    """
    ing = cfg.ingress
    body_mib = math.ceil((ing.max_upload_bytes + body_limits.MULTIPART_SLACK) / 2**20)
    wait_s = str(math.ceil(max(ing.request_timeout_s, ing.document_timeout_s)) + NGINX_ANSWER_MARGIN_S)
    return {"nginx.ingress.kubernetes.io/proxy-body-size": f"{body_mib}m",
            "nginx.ingress.kubernetes.io/proxy-read-timeout": wait_s,
            "nginx.ingress.kubernetes.io/proxy-send-timeout": wait_s}


def core_objects(cfg: AppConfig) -> dict[str, list[dict[str, Any]]]:
    """Namespaces, secrets, storage, the TLS ingress, and the infra (PostgreSQL, RabbitMQ, Jaeger)."""
    c = cfg.cluster
    app_ns, infra = c.namespace, c.infra_namespace
    pg_host = f"postgres.{infra}.svc.cluster.local"
    mq_host = f"rabbitmq.{infra}.svc.cluster.local"

    def secret(name: str, ns: str, data: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns,
                "annotations": {"show-off/replace-me": "placeholder values: set real ones (sealed-secrets, SOPS)"}},
                "type": "Opaque", "stringData": data}

    def statefulset(name: str, image: str, port: int, env: list[dict], mount: str, size: str) -> list[dict]:
        labels = {"app": name}
        return [
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": infra},
             "spec": {"selector": labels, "ports": [{"port": port, "targetPort": port, "name": name}]}},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "namespace": infra},
             "spec": {"serviceName": name, "replicas": 1, "selector": {"matchLabels": labels},
                      "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                          "name": name, "image": image, "ports": [{"containerPort": port}], "env": env,
                          "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                        "limits": {"cpu": "1", "memory": "1Gi"}},
                          "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 10},
                          "volumeMounts": [{"name": "data", "mountPath": mount}]}]}},
                      "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                          "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}}]}},
        ]

    app_objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": app_ns}},
        secret(STORAGE_SECRET, app_ns, {"database-url": f"postgresql://ocr:change-me@{pg_host}:5432/ocr",
                                        "rabbitmq-url": f"amqp://ocr:change-me@{mq_host}:5672/"}),
        secret(API_KEYS_SECRET, app_ns, {"keys": "change-me-to-a-long-random-key"}),
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": IMAGES_PVC, "namespace": app_ns},
         "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": c.image_volume_size}}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": "ocr", "namespace": app_ns, "annotations": {
             "cert-manager.io/cluster-issuer": "letsencrypt", **nginx_limits(cfg)}},
         "spec": {"ingressClassName": "nginx", "tls": [{"hosts": [c.host], "secretName": "ocr-tls"}],
                  "rules": [{"host": c.host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
                      "service": {"name": f"{c.name}-serve-svc", "port": {"number": 8000}}}}]}}]}},
    ]
    infra_objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": infra}},
        secret("postgres", infra, {"POSTGRES_USER": "ocr", "POSTGRES_PASSWORD": "change-me", "POSTGRES_DB": "ocr"}),
        secret("rabbitmq", infra, {"RABBITMQ_DEFAULT_USER": "ocr", "RABBITMQ_DEFAULT_PASS": "change-me"}),
        *statefulset("postgres", "postgres:16.4-bookworm", 5432,
                     [{"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}]
                     + [{"name": k, "valueFrom": {"secretKeyRef": {"name": "postgres", "key": k}}}
                        for k in ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")],
                     "/var/lib/postgresql/data", "20Gi"),
        *statefulset("rabbitmq", "rabbitmq:3.13.7-management", 5672,
                     [{"name": k, "valueFrom": {"secretKeyRef": {"name": "rabbitmq", "key": k}}}
                      for k in ("RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS")],
                     "/var/lib/rabbitmq", "10Gi"),
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "jaeger", "namespace": infra},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "jaeger"}},
                  "template": {"metadata": {"labels": {"app": "jaeger"}}, "spec": {"containers": [{
                      "name": "jaeger", "image": "jaegertracing/all-in-one:1.62.0",
                      "ports": [{"containerPort": 16686}, {"containerPort": 4317}, {"containerPort": 4318}],
                      "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                    "limits": {"cpu": "500m", "memory": "1Gi"}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "jaeger", "namespace": infra},
         "spec": {"selector": {"app": "jaeger"}, "ports": [{"name": "ui", "port": 16686}, {"name": "otlp-grpc",
                                                                                      "port": 4317},
                                                             {"name": "otlp-http", "port": 4318}]}},
    ]
    return {"app.yaml": app_objects, "infra.yaml": infra_objects}


def monitoring(cfg: AppConfig) -> list[dict[str, Any]]:
    """For the Prometheus operator: a PodMonitor over every Ray pod, and our alerting rules as a PrometheusRule."""
    c = cfg.cluster
    meta = {"namespace": c.namespace, "labels": {**POD_LABELS, **c.monitoring_labels}}
    return [
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": c.name, **meta},
         # most metrics come from the workers, where the replicas run; each node's agent exports its own
         "spec": {"selector": {"matchLabels": POD_LABELS}, "namespaceSelector": {"matchNames": [c.namespace]},
                  "podMetricsEndpoints": [{"port": METRICS_PORT["name"], "interval": "15s"}]}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": c.name, **meta},
         "spec": yaml.safe_load(ALERT_RULES.read_text())},
    ]


def render(cfg: AppConfig) -> dict[str, str]:
    """File name -> YAML text of every manifest."""
    header = "# Generated by `python -m kuberay render` from serve_app/config.py. Do not edit by hand.\n"
    files = {"rayservice.yaml": header + yaml.dump(rayservice(cfg), Dumper=_Dumper, sort_keys=False)}
    for name, objects in core_objects(cfg).items():
        files[name] = header + yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)
    files["monitoring.yaml"] = (header + "# The PrometheusRule's spec is kuberay/alerts/rules.yaml: edit that file.\n"
                                + yaml.dump_all(monitoring(cfg), Dumper=_Dumper, sort_keys=False))
    return files


def write(cfg: AppConfig, out: Path = MANIFESTS) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render(cfg).items():
        (out / name).write_text(text)
        paths.append(out / name)
    return paths
