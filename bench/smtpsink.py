"""`python -m bench.smtpsink`: an SMTP server on 127.0.0.1:$PORT that takes every message and keeps none,
except, with SINK_RECORD=path, one line per message (sender, recipients, base64 data) for the baseline."""

import asyncio
import base64
import json
import os
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class Sink:
    def __init__(self, record: str | None) -> None:
        self.file = open(record, "a", buffering=1 << 16) if record else None  # noqa: SIM115

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.file is not None:
            data: Any = envelope.original_content or envelope.content or b""
            line = {"from": envelope.mail_from, "to": envelope.rcpt_tos, "data": base64.b64encode(data).decode()}
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()
        return "250 OK"


async def main() -> None:
    sink = Sink(os.environ.get("SINK_RECORD"))
    loop = asyncio.get_running_loop()
    # A fixed hostname: otherwise every connection asks for this machine's FQDN.
    server = await loop.create_server(lambda: SMTP(sink, hostname="bench-sink"), "127.0.0.1", int(os.environ["PORT"]))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
