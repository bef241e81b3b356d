"""``python -m kuberay render|deploy``: manifests from the typed config, and a deploy with rollback."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from serve_app.config import AppConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kuberay", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="write the manifests (RayService, app and infra objects)")
    r.add_argument("--config", default=None, help="YAML overrides of the typed config (default: OCR_CONFIG)")
    r.add_argument("--out", type=Path, default=None)
    d = sub.add_parser("deploy", help="render, server-side dry run, apply, wait until ready, roll back on failure")
    d.add_argument("--config", default=None)
    d.add_argument("--timeout", type=float, default=900.0)
    d.add_argument("--kubeconfig", default=None)
    args = p.parse_args(argv)
    cfg = AppConfig.load(args.config)
    if args.command == "render":
        from kuberay.render import MANIFESTS, write

        for path in write(cfg, args.out or MANIFESTS):
            print(path)
        return 0
    from kuberay.deploy import DeployError, deploy, kube_client

    try:
        endpoint = deploy(cfg, kube_client(args.kubeconfig), timeout_s=args.timeout)
    except DeployError as exc:
        print(f"deploy failed: {exc}", file=sys.stderr)
        return 1
    print(endpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
