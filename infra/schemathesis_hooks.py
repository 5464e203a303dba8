"""Schemathesis hooks for infra/fuzz.sh: send the NDJSON body of POST /ingest as text."""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
