"""The notifier's Prometheus metrics: e-mails sent and failed per threshold, the ledger, the unrecorded window."""

from collections.abc import Iterable
from datetime import timedelta

from prometheus_client import Counter, Gauge, Histogram

from shared.durations import format_duration

EMAILS_SENT = Counter("keyward_notifier_emails_sent_total", "E-mails the SMTP server accepted", ["threshold"])
EMAILS_FAILED = Counter(
    "keyward_notifier_emails_failed_total",
    "Send attempts that failed: transient ones are retried, permanent ones are not",
    ["threshold", "kind"],
)
FAILURE_KINDS = ("transient", "permanent")
SEND_LATENCY = Histogram(
    "keyward_notifier_send_duration_seconds",
    "One e-mail's SMTP transaction (MAIL to the reply to DATA)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNRECORDED_WINDOW = Histogram(
    "keyward_notifier_unrecorded_window_seconds",
    "From the SMTP server's acceptance to the ledger's record of it; a crash inside it sends a second copy",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1),
)
LEDGER_OPEN = Gauge(
    "keyward_notifier_ledger_open_deliveries",
    "Deliveries not yet settled: pending, sending (claimed), stale (claimed by a sender that died)",
    ["state"],
)
DIGESTS_SENT = Counter(
    "keyward_notifier_digests_sent_total",
    "Digest e-mails the SMTP server accepted (each also counts in the e-mail counters as threshold 'digest')",
)
DIGEST_NOTICES = Counter(
    "keyward_notifier_digest_notices_total", "Notices (key, threshold, recipient) the accepted digests listed"
)
DIGESTS_FORMED = Counter("keyward_notifier_digests_formed_total", "Digests formed from notices as they were recorded")
# The e-mail counters' threshold label of a digest, which lists notices of any threshold.
DIGEST_LABEL = "digest"
NOTICES_RECORDED = Counter("keyward_notifier_notices_recorded_total", "Expiry notices recorded from events")
DUPLICATE_EVENTS = Counter("keyward_notifier_duplicate_events_total", "Events dropped as repeats of a handled ce_id")


def threshold_label(seconds: int) -> str:
    return format_duration(timedelta(seconds=seconds))


def create_label_sets(thresholds: Iterable[timedelta]) -> None:
    """Every e-mail counter's series for each notice threshold, at 0, from the start. A series born at its first
    increment reads as no increase to increase(), so without this the first refusal of a threshold's e-mail
    would never raise KeywardNotifierPermanentFailures. Called with EXPIRY_NOTICE_THRESHOLDS at start; digests too."""
    labels = [threshold_label(int(threshold.total_seconds())) for threshold in thresholds]
    for label in [*labels, DIGEST_LABEL]:
        EMAILS_SENT.labels(label)
        for kind in FAILURE_KINDS:
            EMAILS_FAILED.labels(label, kind)
