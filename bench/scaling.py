"""Scaling: what one more kilobyte, subscription or queued delivery costs.

1. Payload: ingest (the inbound endpoint in-process: parse, validate, map, durable commit,
   acknowledge) of the BRP move padded to 1 KB, 10 KB, 100 KB and 1 MB; messages/s each, and
   the ratio to the 1 KB rate.
2. Subscriptions: the same ingest with 1, 100 and 1,000 subscriptions, each with filters (types,
   a prefix filter, a CloudEvents SQL filter; one in ten matches); ratio to 1 subscription.
3. Backlog: 10 k, 100 k and 1 M queued deliveries (10 k and 50 k with `--quick`), each in a
   store of its own: the time a dispatcher's claim of 50 (with the previous 50 recorded as
   delivered) takes, measured in alternating rounds, and the process's resident memory.
   Targets: claim time flat (ratio of the smallest to the largest backlog >= 0.5) and
   RSS <= 300 MB.

    python -m bench.scaling [--quick]

In-process, so the figures are the gateway's own cost without HTTP; the backlog is made through
the store's ingest (1,000 events per message), not by writing rows behind its back.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from bench._common import Figure, alternate, median, run_one, scaled
from bench._inprocess import endpoint_on
from bench._load import SOAP_HEADERS, requests
from digibridge.delivery.signing import generate_secret
from digibridge.events.filters import subscription_matches
from digibridge.events.records import to_new_event
from digibridge.events.types import CloudEvent
from digibridge.store.sqlite import SqliteStore
from digibridge.store.types import (
    Attempt,
    Completion,
    DeliverySettings,
    InboundMessage,
    Outcome,
    OutcomeKind,
    Subscription,
)
from digibridge.wus.inbound import DigileveringEndpoint

RSS_LIMIT_MB = 300.0
#: Claims of 50 per backlog in each round.
CLAIMS_PER_ROUND = 20
#: A Standard Webhooks signing key (never used: nothing is sent).
SECRET = generate_secret()


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def ingest_rate(endpoint: DigileveringEndpoint, bodies: list[bytes]) -> float:
    content_type = SOAP_HEADERS["Content-Type"]
    started = time.perf_counter()
    for body in bodies:
        answer = await endpoint.handle(
            body, content_type=content_type, soap_action=SOAP_HEADERS["SOAPAction"]
        )
        if answer.status != 200:
            raise RuntimeError(f"not acknowledged: {answer.body[:300]!r}")
    return len(bodies) / (time.perf_counter() - started)


async def payload_sizes(quick: bool) -> list[Figure]:
    sizes = [1_000, 10_000, 100_000, 1_000_000]
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as folder:
        endpoint, store = await endpoint_on(Path(folder))
        try:
            await ingest_rate(endpoint, [r.body for r in requests(20)])
            for size in sizes:
                count = scaled(max(5, (100 if quick else 400) * 1_000 // max(size, 10_000)))
                batch = [r.body for r in requests(count, padding=max(0, size - 2_500))]
                rates[size] = median([await ingest_rate(endpoint, batch[i::2]) for i in (0, 1)])
        finally:
            await store.close()
    return [
        Figure(
            name=f"payload_{size // 1000}kb",
            unit="messages/s",
            value=rates[size],
            baseline=rates[sizes[0]],
            baseline_name="the same at 1 KB",
            details={"ms_per_message": 1000 / rates[size]},
        )
        for size in sizes
    ]


def filtered_subscription(number: int) -> Subscription:
    """One in ten wants the BRP move; all have a types list, a prefix and an SQL filter."""
    wanted = number % 10 == 0
    return Subscription(
        id=f"sub-{number}",
        sink=f"http://127.0.0.1:9/hook-{number}",
        delivery=DeliverySettings(secret=SECRET),
        created_at=datetime.now(UTC),
        types=("nl.brp.persoon-verhuisd" if wanted else "nl.nhr.inschrijving", "nl.bag.pand"),
        filters=(
            {"prefix": {"source": "urn:nld:oin:"}},
            {"sql": f"type LIKE 'nl.%' AND {number} >= 0"},
        ),
    )


async def subscription_counts(quick: bool) -> list[Figure]:
    counts = [1, scaled(100), scaled(1000)]
    rates: dict[int, float] = {}
    messages = scaled(100 if quick else 400, 5)
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="bench-scaling-") as folder:
            endpoint, store = await endpoint_on(Path(folder))
            try:
                for number in range(count):
                    await store.create_subscription(filtered_subscription(number))
                await ingest_rate(endpoint, [r.body for r in requests(20)])
                rates[count] = await ingest_rate(endpoint, [r.body for r in requests(messages)])
            finally:
                await store.close()
    return [
        Figure(
            name=f"subscriptions_{count}",
            unit="messages/s",
            value=rates[count],
            baseline=rates[counts[0]],
            baseline_name="the same with 1 subscription",
            details={"matching_subscriptions": (count + 9) // 10},
        )
        for count in counts
    ]


def bench_event(number: int) -> CloudEvent:
    return CloudEvent(
        id=f"backlog-{number}",
        source="urn:nld:oin:00000001823288444000:systeem:BRP",
        type="nl.brp.persoon-verhuisd",
        time=datetime.now(UTC),
        subject=f"obj-{number % 997}",
        data={"plaats": "Zwolle", "volgnummer": number},
    )


async def fill(store: SqliteStore, size: int) -> None:
    """`size` events queued for the store's subscription, 1,000 per message."""
    per_message = 1000
    for first in range(0, size, per_message):
        last = min(size, first + per_message)
        message = InboundMessage(
            message_id=f"uuid:backlog-{first}",
            kenmerk=f"K-backlog-{first}",
            basisregistratie="BRP",
            gebeurtenissoort="Gv01",
            received_at=datetime.now(UTC),
        )
        events = [to_new_event(bench_event(n)) for n in range(first, last)]
        await store.ingest(message, events, subscription_matches)


class Backlog:
    """A store of its own with `size` deliveries queued for one subscription; `claim_time`
    measures its claims, each recording the previous claim's deliveries as delivered."""

    def __init__(self, path: Path, size: int) -> None:
        self.size = size
        self.store = SqliteStore(path)
        self._completed: list[Completion] = []

    async def fill(self) -> None:
        await self.store.open()
        await self.store.create_subscription(
            Subscription(
                id="sub-backlog",
                sink="http://127.0.0.1:9/hook",
                delivery=DeliverySettings(secret=SECRET),
                created_at=datetime.now(UTC),
            )
        )
        await fill(self.store, self.size)

    async def claim_time(self, claims: int) -> float:
        """Median seconds of `claims` claims of 50."""
        now = datetime.now(UTC)
        times = []
        for _ in range(claims):
            started = time.perf_counter()
            jobs = await self.store.claim_due(
                now=now,
                limit=50,
                lease_until=now + timedelta(minutes=5),
                owner="bench",
                completed=self._completed,
            )
            times.append(time.perf_counter() - started)
            self._completed = [
                Completion(
                    job,
                    Attempt(job.delivery.id, 1, now, 1.0, 204, None),
                    Outcome(OutcomeKind.SUCCEEDED),
                )
                for job in jobs
            ]
        return median(times)


async def backlog(quick: bool) -> list[Figure]:
    """Each backlog in a store of its own, all filled first and then measured in alternating
    rounds, so a slow moment of the machine does not fall on one size only."""
    sizes = [scaled(n, 1000) for n in ([10_000, 50_000] if quick else [10_000, 100_000, 1_000_000])]
    memory: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as folder:
        backlogs = [Backlog(Path(folder) / f"backlog-{n}.db", size) for n, size in enumerate(sizes)]
        try:
            for queued in backlogs:
                await queued.fill()
                await queued.claim_time(5)  # warm-up: statements prepared, pages read
                memory[queued.size] = rss_mb()
            rounds = await alternate(
                *(partial(queued.claim_time, CLAIMS_PER_ROUND) for queued in backlogs)
            )
        finally:
            for queued in backlogs:
                await queued.store.close()
    seconds = {size: median([r[n] for r in rounds]) for n, size in enumerate(sizes)}
    smallest, largest = sizes[0], sizes[-1]
    return [
        Figure(
            name="backlog_claim_time",
            unit="ms per claim of 50",
            value=seconds[smallest] * 1000,
            baseline=seconds[largest] * 1000,
            baseline_name=f"the same with {largest:,} queued: the ratio is 1 when flat",
            target=0.5,
            details={
                **{f"claim_ms_at_{size}": seconds[size] * 1000 for size in sizes},
                "rounds": [[one * 1000 for one in r] for r in rounds],
            },
        ),
        Figure(
            name="backlog_rss",
            unit="MB",
            value=memory[largest],
            target=RSS_LIMIT_MB,
            target_of="value_max",
            details={f"rss_mb_after_{size}": memory[size] for size in sizes},
        ),
    ]


async def run(quick: bool) -> list[Figure]:
    return [
        *await payload_sizes(quick),
        *await subscription_counts(quick),
        *await backlog(quick),
    ]


if __name__ == "__main__":
    sys.exit(run_one(run, __doc__, logging=True))
