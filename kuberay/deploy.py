"""Deploy the RayService with the `kubernetes` client: render -> server-side dry run -> apply -> wait -> endpoint.

KubeRay's own Python client does not cover RayService, so this uses ``CustomObjectsApi`` (group ``ray.io``,
version ``v1``, plural ``rayservices``). If the new config does not become ready in time, the previous spec is
put back (or the new object removed when there was none) and the command fails.
"""

from __future__ import annotations

import copy
import time
from typing import Any, cast

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


def get_rayservice(co: client.CustomObjectsApi, ns: str, name: str) -> dict[str, Any]:
    """Read the RayService; the client types custom objects as ``object``, they are parsed JSON dicts."""
    return cast(dict[str, Any], co.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))


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
    previous: dict[str, Any] | None
    try:
        previous = get_rayservice(co, ns, name)
    except ApiException as exc:
        if exc.status != 404:
            raise DeployError(f"cannot read RayService {ns}/{name}: {exc.status} {exc.reason}") from exc
        previous = None

    def put(spec_body: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        mode = "All" if dry_run else None  # None leaves the dryRun query parameter out
        if previous is None:
            created = co.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, spec_body, dry_run=mode)
            return cast(dict[str, Any], created)
        b = copy.deepcopy(spec_body)
        b["metadata"]["resourceVersion"] = previous["metadata"]["resourceVersion"]
        replaced = co.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, b, dry_run=mode)
        return cast(dict[str, Any], replaced)

    try:
        put(body, dry_run=True)
        log(f"dry run accepted for RayService {ns}/{name}")
        put(body, dry_run=False)
        log(f"applied RayService {ns}/{name}; waiting for it to be ready")
    except ApiException as exc:
        raise DeployError(f"the API server refused the RayService: {exc.status} {exc.reason}: {exc.body}") from exc

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        obj = get_rayservice(co, ns, name)
        if is_ready(obj) and obj.get("metadata", {}).get("generation") == obj.get("status", {}).get(
                "observedGeneration", obj.get("metadata", {}).get("generation")):
            endpoint = f"https://{cfg.cluster.host}/ (in cluster: http://{name}-serve-svc.{ns}.svc:8000/)"
            log(f"ready: {endpoint}")
            return endpoint
        time.sleep(poll_s)

    log(f"not ready after {timeout_s:.0f}s: rolling back")
    current = get_rayservice(co, ns, name)
    if previous is None:
        co.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    else:
        restore = {k: previous[k] for k in ("apiVersion", "kind", "spec")}
        restore["metadata"] = {"name": name, "namespace": ns, "labels": previous["metadata"].get("labels", {}),
                               "resourceVersion": current["metadata"]["resourceVersion"]}
        co.replace_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, restore)
    raise DeployError(f"RayService {ns}/{name} did not become ready within {timeout_s:.0f}s; rolled back")
