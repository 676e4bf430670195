"""Benchmark: ingest throughput of signed (2W-be-S) against unsigned (2W-be) WUS requests.

The inbound endpoint (`DigileveringEndpoint.handle`: parse, check, map, durable SQLite commit,
acknowledgement) in one process, on the same store and mappings, in the same run. Unsigned
requests go through the OIN checks only; signed ones are also verified (structure, chain,
signxml) and answered with a signed acknowledgement carrying SignatureConfirmation. Requests
are built and signed beforehand: the sender's cost is not counted. TLS is not part of it.

    python -m bench.signing [--messages N] [--rounds R]

Prints both rates (messages per second, best of the rounds) and the ratio signed/unsigned.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from lxml import etree
from tests.support.soap import envelope, headers_for, sample, with_kenmerk

from bench._inprocess import endpoint_on
from digibridge.clock import SystemClock
from digibridge.logs import configure_logging
from digibridge.wus.access import InboundSecurity, RegistryRule
from digibridge.wus.certificates import SigningCredentials, TrustStore
from digibridge.wus.devcerts import DevCa
from digibridge.wus.inbound import DigileveringEndpoint
from digibridge.wus.oin import oin_of
from digibridge.wus.tls import PeerIdentity
from digibridge.wus.wsse import EnvelopeSigner

SENDER_OIN = "00000099000000000002"
MESSAGE = "brp-verhuizing.xml"


def requests(count: int, signer: EnvelopeSigner | None) -> list[bytes]:
    """`count` distinct BRP requests (new kenmerk and MessageID each), signed if `signer`."""
    built = []
    for _ in range(count):
        data = envelope(with_kenmerk(sample(MESSAGE)), from_oin=SENDER_OIN)
        if signer is not None:
            root = etree.fromstring(data)
            signer.sign(root, now=datetime.now(UTC))
            data = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
        built.append(data)
    return built


async def ingest(
    endpoint: DigileveringEndpoint, batch: Sequence[bytes], peer: PeerIdentity
) -> float:
    """Messages per second for handling `batch` one after another; every one acknowledged."""
    content_type = headers_for(sample(MESSAGE))["Content-Type"]
    started = time.perf_counter()
    for data in batch:
        answer = await endpoint.handle(data, content_type=content_type, soap_action=None, peer=peer)
        if answer.status != 200:
            raise SystemExit(f"not acknowledged: {answer.body[:500]!r}")
    return len(batch) / (time.perf_counter() - started)


async def run(messages: int, rounds: int, folder: Path) -> tuple[float, float]:
    ca = DevCa.create("bench")
    (folder / "ca.pem").write_bytes(ca.bundle_pem())
    trust = TrustStore.load(folder / "ca.pem")
    sender = ca.client(SENDER_OIN)
    gateway = ca.server()
    clock = SystemClock()
    security = InboundSecurity(
        clock=clock,
        rules={"BRP": RegistryRule(frozenset({SENDER_OIN}), "optional")},
        require_client_certificate=True,
        trust=trust,
        signer=EnvelopeSigner(SigningCredentials(gateway.key, gateway.certificate)),
    )
    endpoint, store = await endpoint_on(folder, clock=clock, security=security)
    peer = PeerIdentity(sender.certificate, oin_of(sender.certificate), "tls")
    client_signer = EnvelopeSigner(SigningCredentials(sender.key, sender.certificate))
    unsigned_rates, signed_rates = [], []
    try:
        await ingest(endpoint, requests(20, None), peer)  # warm-up: caches, first commits
        for _ in range(rounds):
            # Signed batches are built right before use: their timestamps must be fresh.
            unsigned_rates.append(await ingest(endpoint, requests(messages, None), peer))
            signed_rates.append(await ingest(endpoint, requests(messages, client_signer), peer))
    finally:
        await store.close()
    return max(unsigned_rates), max(signed_rates)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.signing", description=__doc__)
    parser.add_argument("--messages", type=int, default=200, help="messages per batch")
    parser.add_argument("--rounds", type=int, default=3, help="batches of each kind")
    arguments = parser.parse_args(argv)
    configure_logging("console", "warning")  # one soap_accepted line per message otherwise
    with tempfile.TemporaryDirectory(prefix=f"bench-signing-{uuid.uuid4().hex[:6]}-") as folder:
        unsigned, signed = asyncio.run(run(arguments.messages, arguments.rounds, Path(folder)))
    print(f"unsigned (2W-be):  {unsigned:8.1f} messages/s")
    print(f"signed (2W-be-S):  {signed:8.1f} messages/s")
    print(f"ratio signed/unsigned: {signed / unsigned:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
