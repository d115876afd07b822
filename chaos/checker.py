"""The verdict of a chaos run: what happened (the workload's history, the topic, the database, the SMTP sink)
held against what must be true.

Times are this machine's wall clock (the services', PostgreSQL's and the checker's are one clock). A call
whose answer never came (a cut connection, a timeout) may or may not have taken effect: the topic decides
(its event is there or not), and a verify answer is wrong only if it is wrong whatever the calls in flight did.
"""

import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from chaos.faults import Fault
from chaos.stack import ADMINS, PARTITIONS, Mail, SinkHandler, Stack
from chaos.workload import History

CREATED = "io.keyward.apikey.created.v1"
UPDATED = "io.keyward.apikey.updated.v1"
EXPIRING = "io.keyward.apikey.expiring.v1"
DELETED = "io.keyward.apikey.deleted.v1"
# A verify answer's time is when PostgreSQL read the row, somewhere between the call's sending and its answer.
CLOCK_SLACK = 0.05
# How long after a threshold's crossing an e-mail normally takes (the expiry watch's interval, the relay, the
# notifier's consumer and sender poll, SMTP): a key deleted within it owed no e-mail.
DELIVERY_ALLOWANCE = 10.0


@dataclass
class Event:
    id: str
    type: str
    time: float
    data: dict[str, Any]


async def read_topic(stack: Stack) -> list[Event]:
    """Every event on the run's topic, from the beginning to the end offsets at the time of the call."""
    import json

    consumer = AIOKafkaConsumer(**stack.admin_kafka().options(), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(stack.topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        events: list[Event] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for r in records:
                    headers = {k: v.decode() for k, v in r.headers}
                    when = datetime.fromisoformat(headers["ce_time"].replace("Z", "+00:00")).timestamp()
                    events.append(Event(headers["ce_id"], headers["ce_type"], when, json.loads(r.value or b"{}")))
        return events
    finally:
        await consumer.stop()


def overlapping(faults: list[Fault], start: float, end: float, before: float = 30.0) -> list[str]:
    """The faults active in [start - before, end]: the likely causes of what went wrong in that window."""
    return [
        f"{f.kind}:{f.target}@t+{f.at:.0f}"
        for f in faults
        if f.started and f.started <= end and (f.ended or math.inf) >= start - before
    ]


@dataclass
class Verdict:
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)
    findings: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())


async def verdict(
    stack: Stack,
    history: History,
    faults: list[Fault],
    events: list[Event],
    memory: dict[str, dict[str, int]],
    *,
    workload_end: float,
    recovery: float,
) -> Verdict:
    v = Verdict()
    _events(v, history, events)
    _verifies(v, history, events)
    _reaping(v, stack, history, events, faults, workload_end, recovery, await _keys_left(stack))
    _emails(v, stack.sink, stack.thresholds, history, events, faults)
    _gateway(v, history)
    _memory(v, memory)
    return v


async def _keys_left(stack: Stack) -> set[str]:
    conn = await asyncpg.connect(stack.database_url)
    try:
        return {str(r["id"]) for r in await conn.fetch("SELECT id FROM keys.api_keys")}
    finally:
        await conn.close()


def _events(v: Verdict, history: History, events: list[Event]) -> None:
    ids = Counter(e.id for e in events)
    created = {e.data["key_id"] for e in events if e.type == CREATED}
    renamed = {(e.data["key_id"], e.data["name"]) for e in events if e.type == UPDATED}
    deleted = {e.data["key_id"] for e in events if e.type == DELETED}
    logical = Counter(
        (e.type, e.data["key_id"], e.data.get("name") if e.type == UPDATED else e.data.get("threshold_seconds"))
        for e in events
    )
    lost: list[dict[str, Any]] = []
    unknown = Counter[str]()
    for call in history.calls:
        if call.kind == "create" and call.status == 201:
            if call.key_id not in created:
                lost.append({"call": "create", "key_id": call.key_id})
        elif call.kind == "rename" and call.status == 200:
            if (call.key_id, call.name) not in renamed:
                lost.append({"call": "rename", "key_id": call.key_id, "name": call.name})
        elif call.kind == "delete" and call.status == 204:
            if call.key_id not in deleted:
                lost.append({"call": "delete", "key_id": call.key_id})
        elif call.status is None:
            outcome = {"rename": (call.key_id, call.name) in renamed, "delete": call.key_id in deleted}.get(
                call.kind, False
            )
            unknown[f"{call.kind}_{'committed' if outcome else 'not_seen'}"] += 1
    v.figures["events"] = {
        "on_topic": len(events),
        "by_type": dict(Counter(e.type.split(".")[3] for e in events)),
        "lost": len(lost),
        "repeated_deliveries": sum(n - 1 for n in ids.values() if n > 1),
        "repeated_changes": sum(n - 1 for n in logical.values() if n > 1),
        "calls_without_answer": dict(unknown),
    }
    v.findings["lost_events"] = lost[:50]
    v.checks["no_event_lost"] = not lost


def _deletion(history: History, events: list[Event]) -> dict[str, tuple[float, float, str]]:
    """Each deleted key's deletion: (no earlier than, no later than, reason)."""
    answered = {c.key_id: c.answered for c in history.calls if c.kind == "delete" and c.status == 204}
    out: dict[str, tuple[float, float, str]] = {}
    for e in events:
        if e.type != DELETED or e.data["key_id"] in out:
            continue
        key = history.keys.get(e.data["key_id"])
        if key is None:
            continue
        if e.data["reason"] == "expired":
            out[key.id] = (key.expires_at, e.time, "expired")
        else:
            lo = key.delete_sent or key.created
            out[key.id] = (lo, answered.get(key.id, e.time + 1.0), "manual")
    return out


def _verifies(v: Verdict, history: History, events: list[Event]) -> None:
    deletion = _deletion(history, events)
    wrong: list[dict[str, Any]] = []
    answered = unavailable = other = 0
    for check in history.checks:
        if check.valid is None:
            if check.status == 503:
                unavailable += 1
            else:
                other += 1
            continue
        answered += 1
        key = history.keys[check.key_id]
        end_lo = end_hi = key.expires_at
        if key.id in deletion and deletion[key.id][2] == "manual":
            end_lo, end_hi = min(end_lo, deletion[key.id][0]), min(end_hi, deletion[key.id][1])
        if check.valid and check.sent >= end_hi + CLOCK_SLACK:
            wrong.append(
                {"key_id": key.id, "answer": "valid", "gone_at": end_hi, "sent": check.sent, "replica": check.replica}
            )
        elif not check.valid and check.sent >= key.created and check.answered <= end_lo - CLOCK_SLACK:
            wrong.append(
                {
                    "key_id": key.id,
                    "answer": "invalid",
                    "live_until": end_lo,
                    "answered": check.answered,
                    "replica": check.replica,
                }
            )
    v.figures["verify"] = {
        "answered": answered,
        "wrong": len(wrong),
        "unavailable_503": unavailable,
        "no_answer_or_other": other,
    }
    v.findings["wrong_verify_answers"] = wrong[:50]
    v.checks["no_wrong_verify_answer"] = not wrong


def _reaping(
    v: Verdict,
    stack: Stack,
    history: History,
    events: list[Event],
    faults: list[Fault],
    workload_end: float,
    recovery: float,
    left: set[str],
) -> None:
    deletion = _deletion(history, events)
    bound = stack.reaper_interval + recovery
    late: list[dict[str, Any]] = []
    not_deleted: list[str] = []
    delays: list[float] = []
    due = [k for k in history.keys.values() if k.expires_at < workload_end]
    for key in due:
        d = deletion.get(key.id)
        if d is None:
            not_deleted.append(key.id)
            continue
        if d[2] != "expired":
            continue
        delay = d[1] - key.expires_at
        delays.append(delay)
        if delay > bound:
            late.append(
                {"key_id": key.id, "delay": round(delay, 1), "faults": overlapping(faults, key.expires_at, d[1])}
            )
    still_there = [k.id for k in due if k.id in left]
    v.figures["reaping"] = {
        "expired_keys": len(due),
        "reaped": len(delays),
        "without_deleted_event": len(not_deleted),
        "still_in_database": len(still_there),
        "delay_p50_s": round(statistics.median(delays), 2) if delays else None,
        "delay_max_s": round(max(delays), 2) if delays else None,
        "bound_s": bound,
        "late": len(late),
    }
    v.findings["late_reaping"] = late[:50]
    v.findings["expired_not_deleted"] = (not_deleted + still_there)[:50]
    v.checks["every_expired_key_deleted"] = not not_deleted and not still_there
    v.checks["reaped_within_bound"] = not late


@dataclass(frozen=True)
class Copy:
    """One notice's e-mail to one administrator: when the sink accepted it, and the digest it came in (None: on
    its own)."""

    at: float
    digest: str | None


def copies(mails: list[Mail]) -> dict[tuple[str, int, str], list[Copy]]:
    """Each (key, threshold, administrator) the sink received, with every e-mail that carried it: a single e-mail
    carries one, a digest every notice it names."""
    received: dict[tuple[str, int, str], list[Copy]] = defaultdict(list)
    for mail in mails:
        for rcpt in mail.recipients:
            for key_id, threshold in mail.notices:
                received[(key_id, threshold, rcpt.split("@")[0])].append(Copy(mail.at, mail.digest))
    return received


def _emails(
    v: Verdict, sink: SinkHandler, thresholds: list[int], history: History, events: list[Event], faults: list[Fault]
) -> None:
    deletion = _deletion(history, events)
    received = copies(sink.received)
    expected = missing = not_due = 0
    missing_list: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for key in history.keys.values():
        for threshold in thresholds:
            crossing = key.expires_at - threshold
            gone = deletion.get(key.id)
            if gone and gone[2] == "manual" and gone[0] <= crossing + 2:
                not_due += 1  # deleted before (or as) the threshold was crossed: no notice is owed
                continue
            for admin in ADMINS:
                expected += 1
                if (key.id, threshold, admin) in received:
                    continue
                gone_at = gone[1] if gone else math.inf
                entry = {
                    "key_id": key.id,
                    "threshold": threshold,
                    "admin": admin,
                    "key_gone_after_crossing_s": round(gone_at - crossing, 1) if gone else None,
                    "faults": overlapping(faults, crossing, min(gone_at, crossing + 60)),
                }
                # The notifier sends nothing for a key deleted (by an administrator, or the reaper once it expired)
                # before the notice went out: a key gone within DELIVERY_ALLOWANCE of the crossing, or of the end
                # of the last fault that held the notice up, owed none. Gone later, the e-mail is missing.
                held_until = max(
                    [crossing, *(f.ended for f in faults if f.started and f.started <= gone_at and f.ended >= crossing)]
                )
                if gone_at - held_until <= DELIVERY_ALLOWANCE:
                    dropped.append(entry)
                else:
                    missing_list.append(entry)
                    missing += 1

    def found(k: str, t: int, a: str, got: list[Copy]) -> dict[str, Any]:
        times = [c.at for c in got]
        return {
            "key_id": k,
            "threshold": t,
            "admin": a,
            "copies": len(got),
            "as": [f"digest {c.digest}" if c.digest else "single" for c in got],
            "faults": overlapping(faults, min(times), max(times)),
        }

    repeats = [found(k, t, a, got) for (k, t, a), got in received.items() if len(got) > 1]
    # A notice goes out in one digest or on its own, never both (docs/notifier.md, "Digests").
    mixed = [
        found(k, t, a, got)
        for (k, t, a), got in received.items()
        if any(c.digest for c in got) and any(c.digest is None for c in got)
    ]
    digests = [m for m in sink.received if m.digest]
    v.figures["emails"] = {
        "received": sum(len(m.recipients) for m in sink.received),
        "singles": sum(len(m.recipients) for m in sink.received if not m.digest),
        "digests": sum(len(m.recipients) for m in digests),
        "distinct_digests": len({m.digest for m in digests}),
        "notices_in_digests": sum(len(m.notices) * len(m.recipients) for m in digests),
        "largest_digest": max((len(m.notices) for m in digests), default=0),
        "expected": expected,
        "missing": missing,
        "key_gone_within_allowance": len(dropped),
        "repeated": sum(len(got) - 1 for got in received.values()),
        "mixed": len(mixed),
        "not_owed": not_due,
        "refused_4xx": sink.refused,
        "unattributed": len(sink.unattributed),
    }
    v.findings["unattributed_emails"] = sink.unattributed[:20]
    v.checks["every_email_attributed"] = not sink.unattributed
    v.findings["missing_emails"] = missing_list[:50]
    v.findings["emails_dropped_key_gone"] = dropped[:50]
    v.findings["repeated_emails"] = repeats[:50]
    v.findings["mixed_emails"] = mixed[:50]
    v.checks["no_email_missing"] = not missing_list
    v.checks["no_email_repeated"] = not repeats
    v.checks["no_email_both_single_and_in_a_digest"] = not mixed


def _gateway(v: Verdict, history: History) -> None:
    statuses = Counter(str(c.status) if c.status is not None else f"no answer ({c.error})" for c in history.calls)
    bad = [
        c for c in history.calls if c.status is not None and c.status >= 500 and not (c.status == 503 and c.retry_after)
    ]
    v.figures["gateway"] = {
        "calls": len(history.calls),
        "statuses": dict(statuses),
        "5xx_not_503_retry_after": len(bad),
    }
    v.findings["gateway_5xx"] = [
        {"kind": c.kind, "status": c.status, "gateway": c.gateway, "at": c.sent} for c in bad[:50]
    ]
    v.checks["no_gateway_5xx"] = not bad


def _memory(v: Verdict, memory: dict[str, dict[str, int]]) -> None:
    grown = {
        name: round(m["end_kb"] / m["warm_kb"], 2)
        for name, m in memory.items()
        if m.get("warm_kb") and m.get("end_kb") and m["end_kb"] > 1.2 * m["warm_kb"]
    }
    v.figures["memory"] = memory
    judged = {name: m["end_kb"] / m["warm_kb"] for name, m in memory.items() if m.get("warm_kb") and m.get("end_kb")}
    v.figures["memory_summary"] = {
        "judged": len(judged),
        "not_judged": sorted(set(memory) - set(judged)),  # restarted too late in the run to be measured twice
        "largest_growth": round(max(judged.values()) - 1, 3) if judged else None,
    }
    v.findings["memory_grown_over_20pct"] = [grown]
    v.checks["memory_within_20pct"] = not grown
