"""Deploy the RayService with the `kubernetes` client: render -> server-side dry run -> apply -> wait -> endpoint.

KubeRay's own Python client does not cover RayService, so this uses ``CustomObjectsApi`` (group ``ray.io``,
version ``v1``, plural ``rayservices``). If the new config does not become ready in time, the previous spec is
put back (or the new object removed when there was none) and the command fails.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kuberay.render import rayservice
from serve_app.config import AppConfig

GROUP, VERSION, PLURAL = "ray.io", "v1", "rayservices"


class DeployError(RuntimeError):
    pass


def kube_client(kubeconfig: str | None = None) -> client.ApiClient:
    try:
        config.load_kube_config(config_file=kubeconfig)
    except config.ConfigException:
        config.load_incluster_config()
    return client.ApiClient()


def is_ready(obj: dict[str, Any]) -> bool:
    """KubeRay >= 1.3 sets a Ready condition; older operators report serviceStatus Running."""
    status = obj.get("status") or {}
    if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])):
        return True
    return status.get("serviceStatus") == "Running"


def deploy(cfg: AppConfig, api: client.ApiClient, timeout_s: float = 900.0, poll_s: float = 5.0,
           log: Any = print) -> str:
    co = client.CustomObjectsApi(api)
    ns, name = cfg.cluster.namespace, cfg.cluster.name
    body = rayservice(cfg)
    try:
        previous = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except ApiException as exc:
        if exc.status != 404:
            raise DeployError(f"cannot read RayService {ns}/{name}: {exc.status} {exc.reason}") from exc
        previous = None

    def put(spec_body: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        kw = {"dry_run": "All"} if dry_run else {}
        if previous is None:
            return co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, spec_body, **kw)
        b = copy.deepcopy(spec_body)
        b["metadata"]["resourceVersion"] = previous["metadata"]["resourceVersion"]
        return co.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, b, **kw)

    try:
        put(body, dry_run=True)
        log(f"dry run accepted for RayService {ns}/{name}")
        put(body, dry_run=False)
        log(f"applied RayService {ns}/{name}; waiting for it to be ready")
    except ApiException as exc:
        raise DeployError(f"the API server refused the RayService: {exc.status} {exc.reason}: {exc.body}") from exc

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        obj = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
        if is_ready(obj) and obj.get("metadata", {}).get("generation") == obj.get("status", {}).get(
                "observedGeneration", obj.get("metadata", {}).get("generation")):
            endpoint = f"https://{cfg.cluster.host}/ (in cluster: http://{name}-serve-svc.{ns}.svc:8000/)"
            log(f"ready: {endpoint}")
            return endpoint
        time.sleep(poll_s)

    log(f"not ready after {timeout_s:.0f}s: rolling back")
    current = co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    if previous is None:
        co.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    else:
        restore = {k: previous[k] for k in ("apiVersion", "kind", "spec")}
        restore["metadata"] = {"name": name, "namespace": ns, "labels": previous["metadata"].get("labels", {}),
                               "resourceVersion": current["metadata"]["resourceVersion"]}
        co.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, restore)
    raise DeployError(f"RayService {ns}/{name} did not become ready within {timeout_s:.0f}s; rolled back")
