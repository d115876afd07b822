"""The notifier's settings: SMTP, the keys service, the ledger's claims and retries, the sender's pace."""

from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, model_validator

from shared.durations import Duration, Thresholds
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    port: int = 8082
    keys_url: str = "http://127.0.0.1:8081"
    keys_timeout: Duration = timedelta(seconds=10)
    console_url: str = "http://127.0.0.1:8080"
    # The thresholds the keys service announces: the e-mail counters get a series for each at start.
    expiry_notice_thresholds: Thresholds = Field(default=tuple(timedelta(days=d) for d in (30, 14, 7, 3, 1)))
    notifier_consumer_group: str = "notifier"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_from: str = "Keyward <no-reply@keyward.example.com>"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # Implicit TLS from the first byte (port 465), instead of STARTTLS.
    smtp_tls: bool = False
    # Each SMTP command's timeout; a claim outlives a whole message's commands by far (see the validator).
    smtp_timeout: Duration = timedelta(seconds=20)

    # A delivery claimed but neither sent nor released after this long was left by a crash: it is retried.
    notice_claim_timeout: Duration = timedelta(minutes=5)
    # A replica working a notice leases it this long; another takes over after (a crash, a long fan-out).
    notice_lease: Duration = timedelta(seconds=30)
    # Transient failures back off from the first to the longest wait, doubling.
    notice_retry_initial: Duration = timedelta(seconds=10)
    notice_retry_max: Duration = timedelta(minutes=15)
    # The directory is read at most this long before an e-mail goes out.
    # More than this many notices for one administrator falling due within the window: one digest e-mail.
    notice_digest_min: int = Field(default=3, ge=1)
    notice_digest_window: Duration = timedelta(minutes=10)
    recipients_cache_ttl: Duration = timedelta(seconds=3)
    organization_cache_ttl: Duration = timedelta(minutes=5)
    # Notices worked at once, each on its own SMTP connection: one slow tenant does not hold up the others.
    sender_concurrency: int = Field(default=4, ge=1, le=64)
    sender_poll_interval: Duration = timedelta(seconds=2)
    processed_events_retention: Duration = timedelta(days=7)
    # A folder whose templates override the built-in ones (branding), file by file.
    notifier_templates_dir: Path | None = None
    db_pool_size: int = Field(default=10, ge=1)

    # Secrets: no defaults.
    # Its own token at the keys service (the keys service's `notifier` entry).
    keys_token: str = Field(min_length=16)
    # `name:token` pairs of the services that may read the notices (the gateway's), comma-separated.
    notices_tokens: str

    secret_fields: ClassVar[tuple[str, ...]] = ("keys_token", "notices_tokens")

    @property
    def envelope_sender(self) -> str:
        return parseaddr(self.smtp_from)[1]

    @model_validator(mode="after")
    def _check_mail_settings(self) -> "Settings":
        if "@" not in self.envelope_sender:
            raise ValueError("SMTP_FROM must hold an address, e.g. 'Keyward <no-reply@example.com>'")
        if self.smtp_tls and self.smtp_starttls:
            raise ValueError("SMTP_TLS (implicit TLS) and SMTP_STARTTLS exclude each other")
        if self.production and self.smtp_username and not (self.smtp_tls or self.smtp_starttls):
            raise ValueError(
                "SMTP_USERNAME is set without SMTP_TLS or SMTP_STARTTLS: the password would travel in clear"
            )
        # MAIL, RCPT, DATA and the message: a live send never outlasts its claim.
        if self.notice_claim_timeout <= 4 * self.smtp_timeout:
            raise ValueError("NOTICE_CLAIM_TIMEOUT must be longer than four SMTP_TIMEOUTs")
        return self
