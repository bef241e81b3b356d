"""Weight files as data: one ``.pt`` holds the architecture spec, half-precision tensors and metadata.

Training writes them with `save_weights`; serving rebuilds the exact network with `load_model`. No hub, no
network: a missing file is an error that names the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from serve_app.ocr.models.crnn import CRNN, CRNNSpec
from serve_app.ocr.models.ctpn import CTPN, CTPNSpec
from serve_app.paths import ASSETS, DEFAULT_DETECTOR, DEFAULT_RECOGNIZER

__all__ = ["ASSETS", "DEFAULT_DETECTOR", "DEFAULT_RECOGNIZER", "load_model", "model_from_blob", "save_weights"]



def save_weights(model: CTPN | CRNN, path: str | Path, meta: dict[str, Any] | None = None, half: bool = True) -> Path:
    """Write a model's spec, weights (fp16 unless ``half=False``; counters kept as they are) and metadata."""
    arch = "ctpn" if isinstance(model, CTPN) else "crnn"
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": arch, "spec": model.spec.to_dict(), "state_dict": state, "meta": meta or {}}, path)
    return path


def read_weights(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def model_from_blob(blob: dict[str, Any]) -> CTPN | CRNN:
    model: CTPN | CRNN
    if blob["arch"] == "ctpn":
        spec = blob["spec"]
        model = CTPN(CTPNSpec(**spec))
    elif blob["arch"] == "crnn":
        spec = dict(blob["spec"])
        spec["channels"] = tuple(spec["channels"])
        model = CRNN(CRNNSpec(**spec))
    else:
        raise ValueError(f"unknown architecture '{blob['arch']}'")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    return model.eval()


def load_model(path: str | Path) -> tuple[CTPN | CRNN, dict[str, Any]]:
    """Rebuild a model in eval mode from a weights file; returns it with the file's metadata."""
    blob = read_weights(path)
    return model_from_blob(blob), blob.get("meta", {})
