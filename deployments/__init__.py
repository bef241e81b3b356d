"""Thin Ray Serve layer: each deployment owns one model (or the HTTP API) and delegates to `serve_app`."""
