#!/usr/bin/env bash
# Requests made from a running service's own OpenAPI spec (schemathesis): its examples, boundary values, random
# requests, and chains along the spec's links (an upload, then its stored image read, corrected and deleted). Fails on
# a 500, an answer that is not what the spec says (status, type, headers, schema), a request the spec forbids that is
# answered 2xx, a deleted image still served, and the like.
#
#   .venv/bin/pip install -e '.[fuzz]'
#   serve run deployments.app:app &          # with DATABASE_URL and RABBITMQ_URL, so that uploads are stored
#   scripts/fuzz_api.sh [URL] [SECONDS]      # default http://127.0.0.1:8000, 300 s
#   OCR_API_KEY=... scripts/fuzz_api.sh      # a service started with OCR_API_KEYS: its requests carry the key, and
#                                            # schemathesis also checks that one without it is refused
#
# Left out: schemathesis's check that every request the spec allows is accepted. Ours refuse some by what they hold,
# which a schema cannot say: bytes that are no image (415), an empty upload (400), a line past the answer's last
# (422), the image sent as a text field (422).
set -euo pipefail
url=${1:-http://127.0.0.1:8000}
seconds=${2:-300}
key=()
[ -n "${OCR_API_KEY:-}" ] && key=(--header "Authorization: Bearer $OCR_API_KEY")
exec "$(dirname "$0")/../.venv/bin/schemathesis" run "$url/openapi.json" --checks all \
    --exclude-checks positive_data_acceptance --workers 2 --max-time "$seconds" \
    --phases examples,coverage,fuzzing,stateful --warnings off "${key[@]}"
