"""Schemathesis's credentials for the keys service (`SCHEMATHESIS_HOOKS`), as the gateway calls it: its service
token and a fresh `X-Acting-Admin` for every request (a claim lives 60 s, a run longer). The reaper's calls go
with the reaper's token, the notifier's with the notifier's: the only ones they accept."""

import os

import schemathesis

from shared.auth import parse_service_tokens, sign_acting_admin

REAPER_PATHS = ("/v1/keys/reap",)
NOTIFIER_PATHS = ("/v1/keys/standing",)


@schemathesis.auth(refresh_interval=None, retry_on=[])
class ServiceActingForAdministrator:
    def get(self, case: schemathesis.Case, context: schemathesis.AuthContext) -> dict[str, str]:
        return parse_service_tokens(os.environ["SERVICE_TOKENS"])

    def set(self, case: schemathesis.Case, data: dict[str, str], context: schemathesis.AuthContext) -> None:
        path = case.operation.path
        service = "reaper" if path in REAPER_PATHS else "notifier" if path in NOTIFIER_PATHS else "gateway"
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data[service]}"
        case.headers["X-Acting-Admin"] = sign_acting_admin(
            os.environ["KEYWARD_CONFORMANCE_ADMIN"],
            secret=os.environ["ACTING_ADMIN_SECRET"],
            issuer=service,
            audience="keys",
            method=case.method,
            path=case.formatted_path,
        )
