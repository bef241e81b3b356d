"""show-off OCR core library: models, processing and config. Never imports Ray."""

__version__ = "0.1.0"
