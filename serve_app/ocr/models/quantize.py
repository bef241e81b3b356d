"""Int8 convolutions for CPUs without bf16 instructions, from activation ranges measured once on TRAIN data.

On an AVX2-only CPU the networks run in fp32 and their convolutions are almost all of the time. Post-training
static quantization (PyTorch FX, per-channel int8 weights, per-tensor int8 activations) runs them 2-3x faster.
The activation ranges come from `training.calibrate`, which feeds TRAIN images through the observed network and
stores the observers' state in the weights file under ``int8``; serving re-creates the observers, loads that
state and converts, so no data and no second weights file are needed at run time. The LSTMs and linear heads
stay in fp32 (the shared CPU notes found no gain from dynamic int8 there).

The quantized part of each network is the one whose input is an image, so one `prepare` covers it: the CRNN's
conv stack and the CTPN's backbone with its 3x3 window (`FLOAT_MODULES` inside it stay in fp32).

Where the CPU has bf16 instructions of its own (AVX-512 BF16, with or without AMX), the int8 networks' LSTMs run
in bf16 instead (`bf16_recurrent`): on a Zen 4 the BiLSTM was 40 % of the CRNN's time on receipt lines and 22 % of a
CTPN pass.
"""

from __future__ import annotations

import copy
import platform
import warnings
from typing import Any

import torch
import torch.fx
from torch import nn

from serve_app.ocr.models.crnn import CRNN
from serve_app.ocr.models.ctpn import CTPN

#: Modules left in fp32, named within the quantized part. In the CTPN the stem conv and the first inverted residual
#: block work at half resolution on raw image statistics: quantizing them too moved 2.7x more text scores (mean
#: |dp| 0.109 against 0.041 on busy TRAIN layouts) to save 0.12 s more per 1696 px frame (0.33 against 0.45 s;
#: fp32 0.87 s) on a 2-core AVX2 EPYC.
FLOAT_MODULES: dict[type, tuple[str, ...]] = {CRNN: (), CTPN: ("0.0", "0.1")}

_OBSERVER_KEY = "activation_post_process"


def engine() -> str | None:
    """The quantized kernel library to use: oneDNN where present (fastest here), else FBGEMM/x86, else QNNPACK."""
    for name in ("onednn", "x86", "fbgemm", "qnnpack"):
        if name in torch.backends.quantized.supported_engines:
            return name
    return None


def _image_part(model: CRNN | CTPN) -> tuple[nn.Module, torch.Tensor]:
    """The image-facing part of a model as one module, and an example input for tracing it."""
    if isinstance(model, CRNN):
        return model.features, torch.zeros(1, 1, 32, 64)
    if isinstance(model, CTPN):
        return nn.Sequential(model.backbone, model.window), torch.zeros(1, 3, 64, 64)
    raise TypeError(f"no int8 part defined for {type(model).__name__}")


def prepare(model: CRNN | CTPN) -> torch.fx.GraphModule:
    """The image-facing part with observers inserted; run TRAIN inputs through it, then `observer_state`."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    name = engine()
    if name is None:
        raise RuntimeError("this PyTorch build has no quantized CPU engine")
    torch.backends.quantized.engine = name
    part, example = _image_part(model)
    mapping = get_default_qconfig_mapping(name)
    for module_name in FLOAT_MODULES[type(model)]:
        mapping = mapping.set_module_name(module_name, None)
    return prepare_fx(copy.deepcopy(part).eval(), mapping, (example,))


def observer_state(prepared: nn.Module) -> dict[str, torch.Tensor]:
    """Only the observers' tensors (ranges and histograms): the weights already live in the weights file."""
    return {k: v.detach().clone() for k, v in prepared.state_dict().items() if _OBSERVER_KEY in k}


def quantize(model: CRNN | CTPN, state: dict[str, torch.Tensor]) -> CRNN | CTPN:
    """Replace the image-facing part of ``model`` (in place) by its int8 version built from stored ranges."""
    from torch.ao.quantization.quantize_fx import convert_fx

    with warnings.catch_warnings():  # FX quantization is deprecated in favour of torchao; torch is pinned
        warnings.simplefilter("ignore")
        prepared = prepare(model)
        missing = [k for k in observer_state(prepared) if k not in state]
        if missing:
            raise ValueError(f"int8 calibration does not match this network ({len(missing)} observers missing)")
        prepared.load_state_dict({**prepared.state_dict(), **state})
        converted = convert_fx(prepared)
    if isinstance(model, CRNN):
        model.features = converted
    else:  # keep `CTPN.stem` apart from the rest: two views of a frame share one stem pass
        model.backbone = nn.Sequential(*split_graph(converted, f"0.{model.stem_modules}."))
        model.stem_modules, model.window = 1, nn.Identity()
    return model


def split_graph(gm: torch.fx.GraphModule, prefix: str) -> tuple[torch.fx.GraphModule, torch.fx.GraphModule]:
    """``gm`` cut before its first module named ``prefix...``: two modules whose composition is ``gm``.

    The value feeding that module is the only one allowed to cross the cut (true between MobileNet's blocks, whose
    skip connections stay inside a block); constants (``get_attr``) are read where they are used.
    """
    nodes = list(gm.graph.nodes)
    first = next((n for n in nodes if n.op == "call_module" and str(n.target).startswith(prefix)), None)
    if first is None:
        raise ValueError(f"no module named {prefix}* in this graph")
    cut = first.args[0]
    if not isinstance(cut, torch.fx.Node):
        raise ValueError(f"{first.target} does not take a computed value")
    head, tail = torch.fx.Graph(), torch.fx.Graph()
    before: dict[torch.fx.Node, torch.fx.Node] = {}
    for n in nodes[:nodes.index(cut) + 1]:
        before[n] = head.node_copy(n, lambda a: before[a])
    head.output(before[cut])
    after: dict[torch.fx.Node, torch.fx.Node] = {cut: tail.placeholder("stem")}

    def arg(a: torch.fx.Node) -> torch.fx.Node:
        if a not in after:
            if a.op != "get_attr":
                raise ValueError(f"{a.name} crosses the cut before {first.target} besides its input")
            after[a] = tail.node_copy(a)
        return after[a]

    for n in nodes[nodes.index(cut) + 1:]:
        after[n] = tail.node_copy(n, arg)
    return torch.fx.GraphModule(gm, head), torch.fx.GraphModule(gm, tail)


def auto_ok() -> bool:
    """Whether ``precision: auto`` may pick int8 here: on x86-64, where it was measured; Arm asks for it by name."""
    return platform.machine().lower() in ("x86_64", "amd64") and engine() is not None


def has_calibration(blob: dict[str, Any]) -> bool:
    """Whether a weights file's contents (`weights.read_weights`) carry int8 ranges from `training.calibrate`."""
    return bool(blob.get("int8"))


class Bf16Recurrent(nn.Module):
    """An LSTM kept in bf16 inside an fp32 network: it takes and gives fp32, like the module it replaces."""

    def __init__(self, rnn: nn.LSTM) -> None:
        super().__init__()
        self.rnn = rnn.to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        seq, state = self.rnn(x.to(torch.bfloat16))
        return seq.float(), state


def bf16_recurrent(model: CRNN | CTPN) -> CRNN | CTPN:
    """Run ``model.rnn`` in bf16 (in place). Only where bf16 is native: emulated, it is slower than fp32.

    On a 2-core AMD Zen 4 (AVX-512 BF16, 2 threads) the CRNN read 387 receipt lines in 1.90 s against 2.27 s and
    a CTPN pass over a 720p frame took 101 against 114 ms; 386 of the 387 lines read the same.
    """
    if isinstance(model.rnn, nn.LSTM):  # not wrapped yet
        model.rnn = Bf16Recurrent(model.rnn)
    return model
