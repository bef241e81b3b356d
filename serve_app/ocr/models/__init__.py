"""Neural networks: each returns raw tensors; decoding lives in `serve_app.ocr.processing`."""
