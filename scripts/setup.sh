#!/usr/bin/env bash
# One-command setup on a fresh machine: fonts for synthetic text, Chromium for the browser tests, Tesseract for the
# comparison benchmark, promtool for the alerting rules (Debian), a virtualenv, the project and its tools.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES="fonts-dejavu-core fonts-liberation fonts-cantarell fonts-crosextra-caladea fonts-crosextra-carlito
fonts-ebgaramond fonts-freefont-ttf fonts-inconsolata fonts-lato fonts-liberation2 fonts-linuxlibertine
fonts-noto-core fonts-noto-mono fonts-open-sans fonts-roboto-unhinted fonts-texgyre fonts-urw-base35
chromium tesseract-ocr tesseract-ocr-eng prometheus"  # chromium: the browser tests drive Debian's build;
# tesseract: benchmarks.compare; prometheus: its promtool checks and unit-tests the alerting rules
if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  missing=$(for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    echo "installing: $missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
else
  echo "note: not root or no apt-get; synthetic text uses whatever fonts are installed" >&2
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel
.venv/bin/python -m pip install -q -e ".[dev]"
echo "setup done: activate with 'source .venv/bin/activate'"
