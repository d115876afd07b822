"""Scenario 2: the list's first pages, search, every sort and page 200, against the same SQL run directly.

The baseline runs the very statements a list request runs (the administrator's row, the organization's
when one is named, the page, the total) through asyncpg on one connection. A lone caller alternates a
request to the service (over a raw keep-alive connection, `bench.httpraw`) and the baseline, so both
are latencies of a lone caller measured under the same conditions.
"""

import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import asyncpg

from bench import data
from bench.httpraw import RawClient
from bench.profile import profiled
from bench.report import Check, Result
from bench.stack import running
from bench.world import Bench
from services.keys import repository, service
from services.keys.directory import repository as directory
from services.keys.schemas import ListQuery
from services.keys.service import decode_cursor, encode_cursor

PAGE = 50
CURSOR_PAGE = 200
SEARCH = "tri"  # a 3-letter search: matches words (triage) and names in ~13% of the rows


@dataclass
class Case:
    name: str
    organization_id: UUID | None = None
    q: str | None = None
    sort: str = "name"
    cursor: str | None = None

    def params(self) -> dict[str, str]:
        raw = {"organization_id": self.organization_id, "q": self.q, "sort": self.sort, "cursor": self.cursor}
        return {k: str(v) for k, v in raw.items() if v is not None} | {"limit": str(PAGE)}


def mid_level(orgs: list[data.Org]) -> data.Org:
    """A level-3 organization (two below the root) with the largest subtree: halfway down the six levels."""
    return max((o for o in orgs if o.depth == 2), key=lambda o: sum(p.path.startswith(o.path) for p in orgs))


async def cursor_for_page(conn: asyncpg.Connection, page: int) -> str:
    """The cursor the list hands out at the end of page `page - 1`, sorted by name (what 199 clicks give)."""
    expr, _ = repository.SORTS["name"]
    row = await conn.fetchrow(
        f"SELECT id, {expr} AS sort_value FROM keys.api_keys WHERE {repository.LIVE} "
        f"ORDER BY {expr}, id OFFSET $1 LIMIT 1",
        (page - 1) * PAGE - 1,
    )
    return encode_cursor(ListQuery(sort="name", order="asc", limit=PAGE), row)


async def direct(conn: asyncpg.Connection, case: Case, after: tuple[Any, UUID] | None) -> float:
    """The same SQL as one list request, on one connection; returns its milliseconds."""
    started = time.perf_counter()
    await directory.administrator_by_username(conn, data.ADMIN)
    subtree = None
    if case.organization_id:
        org = await directory.organization(conn, case.organization_id, None)
        assert org is not None
        subtree = org["path"]
    await repository.list_keys(
        conn, subtree=subtree, q=case.q, sort=case.sort, descending=False, after=after, limit=PAGE + 1
    )
    if case.q:
        await repository.count_matches(conn, subtree=subtree, q=case.q, cap=service.SEARCH_COUNT_CAP + 1)
    else:
        await repository.count_keys(conn, subtree=subtree)
    return (time.perf_counter() - started) * 1000


async def measure(
    b: Bench, keys_url: str, conn: asyncpg.Connection, case: Case
) -> tuple[list[float], list[float], int]:
    """Served and direct, one after the other, request by request, for the case's seconds: a neighbour's
    burst on this shared machine hits both sides alike. Returns both lists of milliseconds and the total."""
    query = ListQuery(organization_id=case.organization_id, q=case.q, sort=case.sort, limit=PAGE, cursor=case.cursor)  # type: ignore[arg-type]
    after = decode_cursor(query)
    target = f"/v1/keys?{urlencode(case.params())}"
    client = RawClient(keys_url)
    served: list[float] = []
    base: list[float] = []
    total = 0
    try:
        deadline = time.monotonic() + b.sizes.list_seconds
        while time.monotonic() < deadline or len(served) < 10:
            # A claim is accepted once: signed for each request (a gateway does the same), before the clock.
            headers = b.admin_headers("GET", "/v1/keys")
            started = time.perf_counter()
            status, body = await client.get(target, headers)
            served.append((time.perf_counter() - started) * 1000)
            page = json.loads(body)
            if status != 200 or len(page["items"]) != PAGE:
                raise RuntimeError(f"{case.name}: {status} {body[:300]!r}")
            total = page["total"]
            base.append(await direct(conn, case, after))
    finally:
        await client.close()
    return served, base, total


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]


async def run(b: Bench) -> list[Result]:
    conn = await b.connect()
    try:
        mid = mid_level(b.orgs)
        cases = [
            Case("root"),
            Case("mid-level", organization_id=mid.id),
            Case(f"search '{SEARCH}'", q=SEARCH),
            *(Case(f"sort {s}", sort=s) for s in ("organization", "created_by", "expires_at", "created_at", "key")),
            Case(f"page {CURSOR_PAGE}", cursor=await cursor_for_page(conn, CURSOR_PAGE)),
        ]
        results = []
        async with running(b.keys_process()) as keys:
            for case in cases:
                async with profiled(keys.pid, f"list-{case.name.split()[0]}-{case.sort}"):
                    served, base, total = await measure(b, keys.url, conn, case)
                served_p95, base_p95 = p95(served), p95(base)
                ratio = served_p95 / base_p95
                results.append(
                    Result(
                        2,
                        f"list {case.name}",
                        figures={
                            "p50_ms": round(statistics.median(served), 2),
                            "p95_ms": round(served_p95, 2),
                            "max_ms": round(max(served), 2),
                            "requests": len(served),
                            "total": total,
                            "keys": b.loaded,
                        },
                        baseline={
                            "p50_ms": round(statistics.median(base), 2),
                            "p95_ms": round(base_p95, 2),
                            "runs": len(base),
                        },
                        ratio=ratio,
                        checks=[Check("p95_ms", served_p95, "<=", 50), Check("ratio", ratio, "<=", 2)],
                        notes=[f"load average {os.getloadavg()[0]:.1f}"],
                        headline=f"p95 {served_p95:.1f} ms ({total:,} rows)",
                        base_headline=f"p95 {base_p95:.1f} ms",
                    )
                )
        return results
    finally:
        await conn.close()
