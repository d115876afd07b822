"""SMTP with aiosmtplib: a connection per fan-out, reused by the next one, and every failure sorted into
transient or permanent."""

import enum
import logging
import socket
import time
from dataclasses import dataclass
from types import TracebackType

import aiosmtplib

log = logging.getLogger(__name__)


class Outcome(enum.Enum):
    SENT = "sent"
    # Worth retrying later: 4xx, the server unreachable or gone mid-transaction.
    TRANSIENT = "transient"
    # 5xx for this recipient or message, or an address that cannot be sent to: never retried.
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    detail: str
    # False when the connection is unusable: the rest of the fan-out waits for a retry.
    connection_ok: bool = True
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    tls: bool = False
    timeout: float = 20.0


# How long a connection may wait idle for the next fan-out. RFC 5321 (4.5.3.2.7) asks servers to wait at
# least five minutes for a command; this stays far below, and a connection the server closed is not reused.
IDLE_REUSE_SECONDS = 10.0


class Mailer:
    """Hands out SMTP sessions; a connection whose last e-mail went through is kept for the next fan-out,
    which then skips the connect, greeting, EHLO (and TLS, AUTH) and the QUIT of the previous one."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        # The name given in EHLO. aiosmtplib would look it up on every connection (socket.getfqdn, which
        # may wait on DNS and blocks the event loop meanwhile); once per process is enough.
        self.local_hostname = socket.getfqdn()
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    def session(self) -> "MailSession":
        return MailSession(self)

    async def take_idle(self) -> aiosmtplib.SMTP | None:
        """The most recently used idle connection that still answers a NOOP, if any. One round trip instead of
        a message's envelope failing on a connection the server dropped (a restart, an idle timeout)."""
        while self._idle:
            smtp, since = self._idle.pop()
            if smtp.is_connected and time.monotonic() - since < IDLE_REUSE_SECONDS:
                try:
                    await smtp.noop(timeout=min(self.config.timeout, 5.0))
                    return smtp
                except (aiosmtplib.SMTPException, OSError):
                    log.info("an idle SMTP connection no longer answers; connecting anew")
            smtp.close()
        return None

    def give_back(self, smtp: aiosmtplib.SMTP) -> None:
        self._idle.append((smtp, time.monotonic()))

    async def close_idle(self, older_than: float = 0.0) -> None:
        """Says QUIT on the idle connections unused for `older_than` seconds (all of them by default)."""
        now = time.monotonic()
        keep = [(smtp, since) for smtp, since in self._idle if now - since < older_than]
        leave = [smtp for smtp, since in self._idle if now - since >= older_than]
        self._idle = keep
        for smtp in leave:
            await _quit(smtp)


class MailSession:
    """Takes an idle connection or connects on the first send, keeps it for the following ones, and gives it
    back at the end if its last send went through (a refused or failed one leaves the session unclear)."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer
        self.config = mailer.config
        self._smtp: aiosmtplib.SMTP | None = None
        self._reusable = False

    async def __aenter__(self) -> "MailSession":
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None and self._reusable and exc is None and smtp.is_connected:
            self.mailer.give_back(smtp)
        elif smtp is not None:
            await _quit(smtp)

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is not None and self._smtp.is_connected:
            return self._smtp
        self._smtp = await self.mailer.take_idle()
        if self._smtp is None:
            c = self.config
            smtp = aiosmtplib.SMTP(
                hostname=c.host,
                port=c.port,
                username=c.username,
                password=c.password,
                use_tls=c.tls,
                start_tls=c.starttls,
                timeout=c.timeout,
                local_hostname=self.mailer.local_hostname,
            )
            await smtp.connect()
            self._smtp = smtp
        return self._smtp

    async def send(self, message: bytes, recipient: str) -> SendResult:
        started = time.perf_counter()
        self._reusable = False
        try:
            smtp = await self._connection()
            _, response = await smtp.sendmail(self.config.sender, [recipient], message)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return _by_code(refused.code, f"{refused.code} {refused.message}", started)
        except aiosmtplib.SMTPSenderRefused as exc:
            # Not about this recipient: SMTP_FROM or the account is refused. Retried, loudly.
            log.error("the SMTP server refuses the sender %s: %s %s", self.config.sender, exc.code, exc.message)
            return SendResult(Outcome.TRANSIENT, f"sender refused: {exc.code} {exc.message}", False, _since(started))
        except (aiosmtplib.SMTPDataError, aiosmtplib.SMTPRecipientRefused) as exc:
            return _by_code(exc.code, f"{exc.code} {exc.message}", started)
        except (aiosmtplib.SMTPAuthenticationError, aiosmtplib.SMTPHeloError) as exc:
            log.error("SMTP session refused: %s %s", exc.code, exc.message)
            await self.close()
            return SendResult(Outcome.TRANSIENT, f"{exc.code} {exc.message}", False, _since(started))
        except aiosmtplib.SMTPResponseException as exc:
            # A refusal not about this recipient or message (a 554 greeting, say): the server's, retried.
            await self.close()
            return SendResult(Outcome.TRANSIENT, f"{exc.code} {exc.message}", False, _since(started))
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Refused, reset, timed out. A timeout waiting for the answer to DATA leaves it unknown whether
            # the server took the message; retrying may deliver a second copy with the same Message-ID.
            await self.close()
            return SendResult(Outcome.TRANSIENT, f"{type(exc).__name__}: {exc}", False, _since(started))
        except ValueError as exc:
            await self.close()  # the envelope may be half open: the next send starts on a new connection
            return SendResult(Outcome.PERMANENT, f"cannot send to this address: {exc}", True, _since(started))
        self._reusable = True
        return SendResult(Outcome.SENT, response, True, _since(started))

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            await _quit(smtp)


async def _quit(smtp: aiosmtplib.SMTP) -> None:
    if smtp.is_connected:
        try:
            await smtp.quit(timeout=2)
        except (aiosmtplib.SMTPException, OSError):
            smtp.close()


def _kind(code: int) -> Outcome:
    return Outcome.PERMANENT if 500 <= code < 600 else Outcome.TRANSIENT


def _by_code(code: int, detail: str, started: float) -> SendResult:
    return SendResult(_kind(code), detail, True, _since(started))


def _since(started: float) -> float:
    return time.perf_counter() - started
