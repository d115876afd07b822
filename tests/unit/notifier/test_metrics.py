from datetime import timedelta

from prometheus_client import REGISTRY

from services.notifier.metrics import create_label_sets


def failed(threshold: str, kind: str) -> float | None:
    return REGISTRY.get_sample_value("keyward_notifier_emails_failed_total", {"threshold": threshold, "kind": kind})


def test_every_threshold_has_its_e_mail_counters_at_zero_before_the_first_e_mail():
    # Thresholds of their own (a minute-long lifecycle), so no other test has sent at them.
    thresholds = (timedelta(seconds=29), timedelta(seconds=13))
    assert failed("29s", "permanent") is None
    create_label_sets(thresholds)
    for label in ("29s", "13s"):
        assert failed(label, "permanent") == 0.0
        assert failed(label, "transient") == 0.0
        assert REGISTRY.get_sample_value("keyward_notifier_emails_sent_total", {"threshold": label}) == 0.0
