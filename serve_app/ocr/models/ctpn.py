"""CTPN (Tian et al. 2016), a text-line detector built from fixed-width proposals.

Backbone to stride 16, 3x3 window features, a BiLSTM over each feature row, and per position 10 fixed-width
anchors with text scores, vertical coordinates and side-refinement offsets.

The backbone is a choice: ``vgg16`` (the paper's, conv5_3), ``resnet18`` (to layer3) or ``mobilenet_v3``
(MobileNetV3-Large ``features[:13]``, the default, ~15 GFLOP at 720p). All are built without pretrained weights:
nothing is fetched from a hub; our own training fills them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import cast

import torch
from torch import nn
from torchvision import models

from serve_app.ocr.processing.anchors import NUM_ANCHORS


@dataclass(frozen=True)
class CTPNSpec:
    """Everything needed to rebuild a CTPN; stored beside its weights."""

    backbone: str = "mobilenet_v3"
    head_channels: int = 256

    def to_dict(self) -> dict:
        return asdict(self)


def _backbone(name: str) -> tuple[nn.Sequential, int]:
    if name == "vgg16":
        return cast(nn.Sequential, models.vgg16(weights=None).features[:30]), 512
    if name == "resnet18":
        r = models.resnet18(weights=None)
        return nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool, r.layer1, r.layer2, r.layer3), 256
    if name == "mobilenet_v3":
        return cast(nn.Sequential, models.mobilenet_v3_large(weights=None).features[:13]), 112
    raise ValueError(f"unknown CTPN backbone '{name}', choose one of {sorted(BACKBONES)}")


BACKBONES = ("mobilenet_v3", "resnet18", "vgg16")

#: Per backbone: how many of its leading modules work at stride 8 or finer, and that stride. Moving an image by a
#: multiple of the stride moves this stem's features by whole cells, which lets two views of one frame share it.
STEMS: dict[str, tuple[int, int]] = {"mobilenet_v3": (7, 8), "resnet18": (6, 8), "vgg16": (17, 8)}


class CTPN(nn.Module):
    """Images ``(N, 3, H, W)`` (H, W multiples of 16, normalised) in; per anchor raw outputs out.

    Returns a dict of tensors over the ``(N, H/16, W/16, k)`` anchor grid: ``scores`` (logits, last dim 2:
    background, text), ``vertical`` (last dim 2: centre offset, log height) and ``side`` (x offset of a line end).
    """

    def __init__(self, spec: CTPNSpec) -> None:
        super().__init__()
        self.spec = spec
        self.backbone, channels = _backbone(spec.backbone)
        c = spec.head_channels
        self.window: nn.Module = nn.Sequential(nn.Conv2d(channels, c, 3, padding=1), nn.ReLU(inplace=True))
        self.rnn: nn.Module = nn.LSTM(c, c // 2, bidirectional=True, batch_first=True)
        self.fc = nn.Sequential(nn.Linear(c, c), nn.ReLU(inplace=True))
        self.scores = nn.Linear(c, 2 * NUM_ANCHORS)
        self.vertical = nn.Linear(c, 2 * NUM_ANCHORS)
        self.side = nn.Linear(c, NUM_ANCHORS)
        self.stem_modules, self.stem_stride = STEMS[spec.backbone]
        #: The BiLSTM's batch (feature rows) is padded with zero rows to a multiple of this; 1: no padding. Rows
        #: are independent sequences, so the answer is the same; the runtime sets 8 where the LSTM runs in bf16.
        self.row_multiple = 1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.trunk(self.stem(x))

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's first modules, to stride ``stem_stride`` (`DetectorRunner` runs them once for two views)."""
        return self.backbone[:self.stem_modules](x)

    def trunk(self, stem: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rest of the network from the stem's features: what `forward` returns."""
        f = self.window(self.backbone[self.stem_modules:](stem))  # N, C, h, w
        n, c, h, w = f.shape
        rows = f.permute(0, 2, 3, 1).reshape(n * h, w, c)  # each feature row is a sequence
        seq, _ = self.rnn(_padded_rows(rows, self.row_multiple))
        seq = seq[:n * h]
        z = self.fc(seq).reshape(n, h, w, c)
        return {
            "scores": self.scores(z).reshape(n, h, w, NUM_ANCHORS, 2),
            "vertical": self.vertical(z).reshape(n, h, w, NUM_ANCHORS, 2),
            "side": self.side(z).reshape(n, h, w, NUM_ANCHORS),
        }


def _padded_rows(rows: torch.Tensor, multiple: int) -> torch.Tensor:
    """``rows`` with zero rows appended up to a multiple of ``multiple``.

    oneDNN's bf16 LSTM takes 2.5-4x as long per row at some batch sizes (53, 59, 61, 67, 106, 107, 122: the row
    counts of 720p frames and tall receipts) as at multiples of 8 (a 2-core Xeon with AMX, 2 threads; fp32 shows
    no such steps). Padding costs at most seven rows: on a 2-core AMD Zen 4, whose steps fall elsewhere (31, 41,
    121 rows), it is neutral.
    """
    extra = -rows.shape[0] % multiple
    return torch.cat([rows, rows.new_zeros(extra, *rows.shape[1:])]) if extra else rows


def build_ctpn(*, backbone: str = "mobilenet_v3", head_channels: int = 256) -> CTPN:
    """Build a CTPN by backbone name; weights are loaded separately (`serve_app.ocr.models.weights`)."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown CTPN backbone '{backbone}', choose one of {list(BACKBONES)}")
    return CTPN(CTPNSpec(backbone, head_channels))
