"""`python -m bench.bare`: the verify baseline, a bare FastAPI endpoint answering a constant.

Served by the same `shared.serve.serve` as every Keyward service (same uvicorn host, log level, no access
log), so the only difference measured is what the keys service does per request.
"""

import os

from fastapi import FastAPI

from shared.serve import serve
from shared.settings import ServiceSettings

app = FastAPI()
ANSWER = {"valid": True}


@app.post("/v1/keys/verify")
async def verify() -> dict[str, bool]:
    return ANSWER


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    # It uses no Kafka: no principal of its own (dev.env's SASL listener would want one).
    serve(app, ServiceSettings(kafka_security_protocol="PLAINTEXT"), int(os.environ["PORT"]))
