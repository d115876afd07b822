"""Each process its own secrets: the environment one local process of a service gets, from the whole.

`make run`, the tests and the benchmarks start every service from one environment (deploy/local/dev.env and
whatever the caller set), which holds every service's secrets. A process gets only its own, as each pod gets
only its own Secret in Kubernetes:

- its database login as DATABASE_URL (`<SERVICE>_DATABASE_URL`, pointed at DATABASE_URL's database, so a
  test's scratch database works too); with KEYWARD_PGBOUNCER=1 through the local PgBouncer, as in Kubernetes
  (`through_pgbouncer`), and the keys service's verify pool through PgBouncer's `verify` instance
  (VERIFY_DATABASE_URL);
- its Kafka principal as KAFKA_USERNAME/KAFKA_PASSWORD (`<SERVICE>_KAFKA_PASSWORD`; deploy/local/kafka-access.txt
  says what each may do);
- its token at the keys service as KEYS_TOKEN (unless set), from its entry of SERVICE_TOKENS (which only the
  keys service keeps whole);
- the secrets its settings name, and nothing of another service's.

    python deploy/local/runenv.py SERVICE      # NUL-separated NAME=value pairs, for `env -i`
"""

import os
import sys
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

SERVICES = ("keys", "keys-relay", "notifier", "reaper", "gateway")
# Variables that hold a secret: none reaches a process unless its service is listed for it.
SECRETS: dict[str, tuple[str, ...]] = {
    "SERVICE_TOKENS": ("keys",),
    "ACTING_ADMIN_SECRET": ("keys", "gateway"),
    "KEY_HMAC_SECRETS": ("keys",),
    "KEY_ENCRYPTION_KEYS": ("keys",),
    "SESSION_SECRET": ("gateway",),
    "AUTH_JWT_SECRET": ("gateway",),
    "OIDC_CLIENT_SECRET": ("gateway",),
    "NOTIFIER_TOKEN": ("gateway",),
    "NOTICES_TOKENS": ("notifier",),
    "SMTP_PASSWORD": ("notifier",),
    # The broker's super user and other platform services' principal: no Keyward service's.
    "KAFKA_ADMIN_PASSWORD": (),
    "KAFKA_PLATFORM_PASSWORD": (),
}
# The database login and the Kafka principal of each service (the relay is the keys service's).
ACCOUNT = {"keys": "keys", "keys-relay": "keys", "notifier": "notifier", "reaper": "reaper", "gateway": "gateway"}
# Secrets that are one per service, handed over under the variable the service reads.
PER_SERVICE = ("DATABASE_URL", "KAFKA_PASSWORD")


def service_environment(service: str, environ: Mapping[str, str]) -> dict[str, str]:
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
    account = ACCOUNT[service]
    per_service = {f"{a.upper()}_{name}" for a in set(ACCOUNT.values()) for name in PER_SERVICE}
    env = {
        name: value
        for name, value in environ.items()
        if name not in per_service and (name not in SECRETS or account in SECRETS[name])
    }
    own_database = environ.get(f"{account.upper()}_DATABASE_URL")
    if own_database:
        env["DATABASE_URL"] = on_database_of(own_database, environ.get("DATABASE_URL", own_database))
        if through_pgbouncer(service, environ):
            direct = env["DATABASE_URL"]
            env["DATABASE_URL"] = via_pgbouncer(direct, environ.get("KEYWARD_PGBOUNCER_PORT", "56432"))
            if account == "keys":
                # Verify's pool to the PgBouncer instance of its own (deploy/local/pgbouncer.sh): administrators'
                # transactions cannot take the server connections it waits for.
                env["VERIFY_DATABASE_URL"] = via_pgbouncer(
                    direct, environ.get("KEYWARD_PGBOUNCER_VERIFY_PORT", "56433")
                )
    if service == "keys" and environ.get("SERVES") == "verify":
        # As deploy/k8s runs it: a verify-only process is not given what it never uses.
        for name in ("ACTING_ADMIN_SECRET", "KEY_ENCRYPTION_KEYS"):
            env.pop(name, None)
    own_kafka = environ.get(f"{account.upper()}_KAFKA_PASSWORD")
    if own_kafka:
        env["KAFKA_USERNAME"], env["KAFKA_PASSWORD"] = account, own_kafka
    if account != "keys" and "SERVICE_TOKENS" in environ and "KEYS_TOKEN" not in environ:
        tokens = dict(part.strip().split(":", 1) for part in environ["SERVICE_TOKENS"].split(",") if ":" in part)
        if account in tokens:
            env["KEYS_TOKEN"] = tokens[account].strip()
    return env


def through_pgbouncer(service: str, environ: Mapping[str, str]) -> bool:
    """KEYWARD_PGBOUNCER=1: the service's pools go through the local PgBouncer (deploy/local/pgbouncer.sh), as in
    Kubernetes (docs/operations.md, "Database connections"). The relay stays direct: its lock and LISTEN need a
    session of their own, and so does the keys service when it runs the relay itself (RUN_RELAY, on by default)."""
    if environ.get("KEYWARD_PGBOUNCER") != "1" or service == "keys-relay":
        return False
    return service != "keys" or environ.get("RUN_RELAY", "true").lower() in ("false", "0", "no", "off")


def via_pgbouncer(url: str, port: str) -> str:
    """`url`'s login and database at the local PgBouncer, pooling by transaction (shared.db.pgbouncer_options)."""
    parts = urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@{parts.hostname}:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query="pgbouncer=transaction"))


def on_database_of(login: str, database: str) -> str:
    """`login`'s user and password on `database`'s host, port and database."""
    user = urlsplit(login)
    target = urlsplit(database)
    netloc = f"{user.username}:{user.password}@{target.hostname}:{target.port or 5432}"
    return urlunsplit(target._replace(netloc=netloc))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    env = service_environment(argv[0], os.environ)
    sys.stdout.write("".join(f"{name}={value}\0" for name, value in env.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
