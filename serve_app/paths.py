"""Where shipped artifacts live (no heavy imports here: the ingress reads this without torch)."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_DETECTOR = ASSETS / "ctpn_mobilenet_v3.pt"
DEFAULT_RECOGNIZER = ASSETS / "crnn_full.pt"
DEFAULT_LEXICON = ASSETS / "lexicon.txt.gz"
