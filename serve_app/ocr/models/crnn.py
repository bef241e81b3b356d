"""CRNN (Shi et al. 2015): a conv stack that squeezes height to 1, a 2-layer BiLSTM, per-column class logits.

Changes from the paper, kept small and explained in the model card: batch norm after every conv (trains from
scratch on CPU in minutes rather than hours) and a final (2, 3) conv with width padding so that output column
``t`` covers input pixels ``[4t, 4t + 4)`` exactly, which makes word boxes from CTC alignments simple.

With ``case_head`` the output layer is factored: one softmax over case-folded classes (blank, digits, lower-case
letters, punctuation) and, per letter, a logistic "upper case" score. The full distribution is their product, so
serving sees the usual per-class log-probabilities. Training data whose labels ignore case (SROIE) then trains the
folded softmax only: its gradient to the case scores is exactly zero, and case is learnt from case-true data alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from serve_app.ocr.alphabet import CHARSET, num_classes

#: Input height every crop is resized to, and the horizontal stride of the output columns.
INPUT_HEIGHT = 32
COLUMN_STRIDE = 4


@dataclass(frozen=True)
class CRNNSpec:
    """Everything needed to rebuild a CRNN; stored beside its weights."""

    variant: str = "slim"
    channels: tuple[int, ...] = (32, 64, 128, 128, 256, 256, 256)
    hidden: int = 128
    charset: str = CHARSET
    case_head: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, CRNNSpec] = {
    "full": CRNNSpec("full", (64, 128, 256, 256, 512, 512, 512), 256),
    "slim": CRNNSpec("slim", (32, 64, 128, 128, 256, 256, 256), 128),
}


def case_folding(charset: str) -> tuple[list[int], list[int], list[int]]:
    """For each full class (blank first), its folded class; and the full classes of the upper and lower letters."""
    folded = "".join(ch for ch in charset if not ("A" <= ch <= "Z"))
    index = {ch: i + 1 for i, ch in enumerate(folded)}
    to_folded = [0] + [index[ch.lower()] if "A" <= ch <= "Z" else index[ch] for ch in charset]
    upper = [i + 1 for i, ch in enumerate(charset) if "A" <= ch <= "Z"]
    lower = [charset.index(charset[u - 1].lower()) + 1 for u in upper]
    return to_folded, upper, lower


def _conv(cin: int, cout: int, kernel: tuple[int, int] = (3, 3), pad: tuple[int, int] = (1, 1)) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=pad, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class CRNN(nn.Module):
    """Grayscale crops ``(N, 1, 32, W)`` in, logits ``(N, W // 4, classes)`` out (blank is class 0)."""

    #: With the case head: the folded class of each full class, and the full classes of upper- and lower-case letters.
    to_folded: torch.Tensor
    upper: torch.Tensor
    lower: torch.Tensor

    def __init__(self, spec: CRNNSpec) -> None:
        super().__init__()
        self.spec = spec
        c = spec.channels
        layers: list[nn.Module] = []
        layers += _conv(1, c[0]) + [nn.MaxPool2d(2, 2)]  # 16 x W/2
        layers += _conv(c[0], c[1]) + [nn.MaxPool2d(2, 2)]  # 8 x W/4
        layers += _conv(c[1], c[2]) + _conv(c[2], c[3]) + [nn.MaxPool2d((2, 1), (2, 1))]  # 4 x W/4
        layers += _conv(c[3], c[4]) + _conv(c[4], c[5]) + [nn.MaxPool2d((2, 1), (2, 1))]  # 2 x W/4
        layers += _conv(c[5], c[6], kernel=(2, 3), pad=(0, 1))  # 1 x W/4
        self.features: nn.Module = nn.Sequential(*layers)  # `quantize` may swap in its int8 graph
        self.rnn: nn.Module = nn.LSTM(c[6], spec.hidden, num_layers=2, bidirectional=True, batch_first=True)
        if spec.case_head:
            to_folded, upper, lower = case_folding(spec.charset)
            self.classifier = nn.Linear(2 * spec.hidden, max(to_folded) + 1)
            self.case = nn.Linear(2 * spec.hidden, len(upper))
            self.register_buffer("to_folded", torch.tensor(to_folded), persistent=False)
            self.register_buffer("upper", torch.tensor(upper), persistent=False)
            self.register_buffer("lower", torch.tensor(lower), persistent=False)
        else:
            self.classifier = nn.Linear(2 * spec.hidden, num_classes(spec.charset))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)  # N, C, 1, T
        f = f.squeeze(2).transpose(1, 2)  # N, T, C
        seq, _ = self.rnn(f)
        if not self.spec.case_head:
            return self.classifier(seq)
        return self.cased_log_probs(self.classifier(seq), self.case(seq))

    def cased_log_probs(self, folded: torch.Tensor, case: torch.Tensor) -> torch.Tensor:
        """Full-class log-probabilities from folded logits ``(N, T, F)`` and per-letter case logits ``(N, T, 26)``."""
        folded, case = folded.float(), case.float()
        out = folded.log_softmax(-1)[..., self.to_folded].clone()
        out[..., self.upper] += nn.functional.logsigmoid(case)
        out[..., self.lower] += nn.functional.logsigmoid(-case)
        return out


def build_crnn(*, variant: str = "slim", charset: str = CHARSET, case_head: bool = False) -> CRNN:
    """Build a CRNN by variant name; weights are loaded separately (`serve_app.ocr.models.weights`)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CRNN variant '{variant}', choose one of {sorted(VARIANTS)}")
    spec = VARIANTS[variant]
    return CRNN(CRNNSpec(spec.variant, spec.channels, spec.hidden, charset, case_head))
