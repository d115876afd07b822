"""The local broker as the tests and the benchmarks reach it: a principal's access, and topics of their own.

The local Kafka takes only signed-in clients (deploy/local/kafka.sh, kafka-access.txt). A test or a benchmark
publishes, reads and creates topics as `admin` (the operator), starts each service as its own principal
(runenv.py), and gives each topic it creates the rights the lifecycle topic has, so that every service works
on it as it would on `apikeys.lifecycle` and nothing more.
"""

import asyncio
import os
from pathlib import Path

from shared.kafka import KafkaAccess, ensure_topics

KAFKA_SH = Path(__file__).with_name("kafka.sh")


ACCESS_FILE = Path(__file__).with_name("kafka-access.txt")


def password_variable(principal: str) -> str:
    """The variable holding `principal`'s password, as kafka-access.txt's `user` line names it."""
    for line in ACCESS_FILE.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields[:2] == ["user", principal] and len(fields) == 3:
            return fields[2]
    raise LookupError(f"{principal!r} is not a user of {ACCESS_FILE.name}")


def access(principal: str = "admin") -> KafkaAccess:
    """`principal`'s access to the local broker, its password from the environment (deploy/local/dev.env)."""
    return KafkaAccess(
        os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        os.environ.get("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
        principal,
        os.environ[password_variable(principal)],
    )


async def create_topics(topics: dict[str, int]) -> None:
    """Creates the topics (name -> partitions) and grants each that is not a dead-letter topic, with its
    `<name>.dlq`, the lifecycle topic's ACLs."""
    await ensure_topics(access(), topics)
    lifecycles = [name for name in topics if not name.endswith(".dlq")]
    if lifecycles:
        await grant(*lifecycles)


async def grant(*topics: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "bash", str(KAFKA_SH), "grant", *topics, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"kafka.sh grant {' '.join(topics)} failed:\n{output.decode(errors='replace')}")
