"""Headers every answer carries: a strict Content-Security-Policy (no inline script or style), no sniffing,
no framing, no referrer."""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def content_security_policy(form_targets: tuple[str, ...] = ()) -> str:
    """`form_targets`: origins a form's answer may redirect to besides this one (the OpenID provider, where
    sign-out continues: browsers hold the redirects that follow a form post to `form-action` too)."""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            " ".join(["form-action 'self'", *form_targets]),
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "manifest-src 'self'",
        ]
    )


CONTENT_SECURITY_POLICY = content_security_policy()
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), clipboard-write=(self)",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp, form_targets: tuple[str, ...] = ()) -> None:
        self.app = app
        self.headers = SECURITY_HEADERS | {"Content-Security-Policy": content_security_policy(form_targets)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)
