"""The `digibridge` command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from digibridge import __version__
from digibridge._cli_config import config, mask_url
from digibridge._cli_deliveries import deliveries
from digibridge._cli_store import store
from digibridge.config import ConfigError, Settings, load_settings
from digibridge.errors import DigibridgeError
from digibridge.logs import configure_logging


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"digibridge: {message}", err=True)
    sys.exit(code)


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        _fail(str(exc), code=2)
        raise  # unreachable; keeps the type checker sure a Settings comes back


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digibridge")
def main() -> None:
    """digibridge: DigiLevering SOAP in, signed NL GOV CloudEvent webhooks out."""


@main.command()
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    envvar="DIGIBRIDGE_CONFIG",
    help="TOML or YAML configuration file (or set DIGIBRIDGE_CONFIG).",
)
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8000).")
@click.option("--mappings", type=click.Path(path_type=Path), help="Folder of mapping files.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Gateway processes serving one socket (default 1; one process uses one core).",
)
def serve(
    config: Path | None,
    host: str | None,
    port: int | None,
    mappings: Path | None,
    workers: int | None,
) -> None:
    """Run the gateway: inbound SOAP endpoint, REST API and webhook delivery."""
    # Only the server command needs uvicorn.
    from digibridge import serving, supervisor  # noqa: PLC0415
    from digibridge.app import WUS_PATH, create_app, preflight  # noqa: PLC0415

    settings = _settings(config, host=host, port=port, mappings=mappings, workers=workers)
    configure_logging(settings.log_format, settings.log_level)
    try:
        app = create_app(settings)
        asyncio.run(preflight(app))
    except DigibridgeError as exc:
        _fail(str(exc), code=2)
    base = settings.base_url
    wus_security = app.state.wus_security
    scheme = "https" if wus_security.server_tls is not None else "http"
    click.echo(f"digibridge {__version__} listening on {scheme}://{settings.host}:{settings.port}")
    click.echo(f"  inbound SOAP (WUS):  POST {base}{WUS_PATH}")
    click.echo(f"  WSDL:                {base}{WUS_PATH}?wsdl")
    click.echo(f"  REST API:            {base}/v1/subscriptions  (OpenAPI: {base}/v1/openapi.json)")
    click.echo(f"  store:               {mask_url(settings.store_url)}")
    click.echo(f"  mappings:            {settings.mappings}")
    if settings.workers > 1:
        click.echo(f"  workers:             {settings.workers} processes")
    for line in wus_security.summary():
        click.echo(f"  WUS security:        {line}")
    if not settings.api_access_configured:
        click.echo(
            "  API access:          no API keys or OAuth configured: "
            "the REST API answers loopback only"
        )
    sys.stdout.flush()
    if settings.workers == 1:
        serving.serve_app(app, settings)
    else:
        try:
            supervisor.run(settings)
        except DigibridgeError as exc:
            _fail(str(exc))


@main.command("map")
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mappings", type=click.Path(path_type=Path), help="Folder of mapping files.")
@click.option(
    "--form",
    type=click.Choice(["informatierijk", "informatiearm"]),
    default="informatierijk",
    show_default=True,
    help="Which form of the events to print.",
)
def map_command(message: Path, mappings: Path | None, form: str) -> None:
    """Dry run: print the CloudEvents a DigiLevering MESSAGE.xml becomes.

    The events go to stdout as JSON; which rule made them, and why each other rule of the
    message's basisregistratie did not apply, goes to stderr.
    """
    from digibridge.mapping.engine import MappingSet  # noqa: PLC0415
    from digibridge.wus.digilevering import read_levering  # noqa: PLC0415

    settings = _settings(None, mappings=mappings)
    try:
        mapping_set = MappingSet.load(Path(settings.mappings), dataschema_base=settings.base_url)
        levering = read_levering(message.read_bytes(), max_depth=settings.max_xml_depth)
        explanation = mapping_set.explain(levering)
        for outcome in explanation.outcomes:
            if outcome.rule.match.basisregistratie != levering.basisregistratie:
                continue
            if outcome.reason is None:
                ids = ", ".join(event.id for event in outcome.events)
                what = f"{outcome.rule.event.type} x{len(outcome.events)} ({ids})"
                click.echo(f"matched  {outcome.rule.name} ({outcome.rule.mark}): {what}", err=True)
            else:
                click.echo(
                    f"skipped  {outcome.rule.name} ({outcome.rule.mark}): {outcome.reason}",
                    err=True,
                )
        events = mapping_set.map(levering)
    except DigibridgeError as exc:
        _fail(f"{message}: {exc}")
    if form == "informatiearm":
        events = [event.informatiearm or event for event in events]
    click.echo(json.dumps([event.to_json_dict() for event in events], indent=2, ensure_ascii=False))


@main.command()
@click.option(
    "--mappings",
    type=click.Path(path_type=Path),
    help="Folder of mapping files (default: the configured one, else the bundled mappings/).",
)
def check(mappings: Path | None) -> None:
    """Check every mapping file, and map every sample message against its golden events.

    Samples are the *.xml files of a samples/ folder inside the mappings folder, else of a
    samples/ folder next to it; each needs <name>.events.json beside it, written with the base
    URL https://digibridge.example. Problems are printed as file:line:column: reason; exit 1.
    """
    from digibridge.mapping.check import check_directory  # noqa: PLC0415
    from digibridge.wus.digilevering import read_levering  # noqa: PLC0415

    settings = _settings(None, mappings=mappings)
    result = check_directory(
        Path(settings.mappings),
        read_message=lambda data: read_levering(data, max_depth=settings.max_xml_depth),
    )
    for problem in result.problems:
        click.echo(str(problem), err=True)
    if not result.ok:
        _fail(result.summary())
    click.echo(result.summary())


@main.command()
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to", "to", required=True, help="Endpoint URL, e.g. http://127.0.0.1:8000/wus/digilevering"
)
@click.option("--soap12", is_flag=True, help="Send as SOAP 1.2 instead of SOAP 1.1.")
@click.option("--message-id", help="wsa:MessageID to use (default: a new urn:uuid).")
@click.option("--from-oin", help="Sender OIN, sent as wsa:From/Address?OIN=…")
@click.option(
    "--client-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Client certificate (PEM) for mutual TLS (profile 2W-be).",
)
@click.option(
    "--client-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key of --client-cert (default: in the same file).",
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CAs the server's TLS certificate and the signature of its answer must chain to.",
)
@click.option(
    "--sign",
    is_flag=True,
    help="Sign the request with WS-Security (profile 2W-be-S) and require a signed answer "
    "that confirms it.",
)
@click.option(
    "--sign-cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Certificate to sign with (default: --client-cert).",
)
@click.option(
    "--sign-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private key of the signing certificate (default: --client-key).",
)
@click.option(
    "--key-password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the private keys' password (or set DIGIBRIDGE_KEY_PASSWORD).",
)
def send(  # click passes every option by keyword
    message: Path,
    to: str,
    *,
    soap12: bool,
    message_id: str | None,
    from_oin: str | None,
    client_cert: Path | None,
    client_key: Path | None,
    ca_bundle: Path | None,
    sign: bool,
    sign_cert: Path | None,
    sign_key: Path | None,
    key_password_file: Path | None,
) -> None:
    """Send a DigiLevering MESSAGE.xml as a WUS SOAP call (a zeep client from the served WSDL)."""
    from digibridge.wus.certificates import KeyMaterialError, read_password  # noqa: PLC0415
    from digibridge.wus.client import SendError, client_security, send_levering  # noqa: PLC0415

    try:
        security = client_security(
            ca_bundle=ca_bundle,
            client_cert=client_cert,
            client_key=client_key,
            sign_cert=(sign_cert or client_cert) if sign else None,
            sign_key=(sign_key or client_key) if sign else None,
            key_password=read_password(
                os.environ.get("DIGIBRIDGE_KEY_PASSWORD"), key_password_file
            ),
        )
        result = send_levering(
            message, to, soap12=soap12, message_id=message_id, from_oin=from_oin, security=security
        )
    except (SendError, KeyMaterialError) as exc:
        _fail(str(exc))
    click.echo(
        json.dumps(
            {
                "messageId": result.message_id,
                "relatesTo": result.relates_to,
                "acknowledgement": result.acknowledgement,
            },
            indent=2,
            ensure_ascii=False,
            default=str,
        )
    )


main.add_command(deliveries)
main.add_command(config)
main.add_command(store)


@main.command("dev-certs")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def dev_certs(directory: Path) -> None:
    """Write a local test PKI into DIRECTORY, to try mutual TLS and WS-Security.

    A root and an intermediate CA, a server certificate for localhost and 127.0.0.1, client
    certificates with test OINs (00000099…) as subject serialNumber, and an example
    configuration. Keys are not encrypted: never use these outside a test setup.
    """
    from digibridge.wus.devcerts import write_dev_pki  # noqa: PLC0415

    for path in write_dev_pki(directory):
        click.echo(str(path))
    click.echo(f"try: digibridge serve --config {directory / 'digibridge-secure.toml'}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9000, show_default=True, type=int)
@click.option("--secret", help="whsec_… secret to verify Standard Webhooks signatures with.")
def receive(host: str, port: int, secret: str | None) -> None:
    """A local webhook receiver: verifies signatures and prints each CloudEvent."""
    import uvicorn  # noqa: PLC0415

    from digibridge.delivery.receiver import create_receiver_app  # noqa: PLC0415

    app = create_receiver_app(secret, out=click.echo)
    check = "verifying signatures" if secret else "NOT verifying signatures (no --secret)"
    click.echo(f"receiving webhooks on http://{host}:{port}/ ({check})")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


@main.command("digimelding-stub")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int)
@click.option("--tls-cert", type=click.Path(exists=True, path_type=Path), help="Serve HTTPS.")
@click.option("--tls-key", type=click.Path(exists=True, path_type=Path), help="Key of --tls-cert.")
@click.option(
    "--client-ca",
    type=click.Path(exists=True, path_type=Path),
    help="Require client certificates chaining to these CAs (mutual TLS).",
)
@click.option(
    "--signature-ca",
    type=click.Path(exists=True, path_type=Path),
    help="Require WS-Security signatures by certificates chaining to these CAs (2W-be-S).",
)
def digimelding_stub(  # noqa: PLR0917 - click passes every option by keyword
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    signature_ca: Path | None,
) -> None:
    """A DigiMelding stub: the DMKS SOAP operations at /dmks, a control API at /control/."""
    import ssl  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from digibridge.wus.certificates import TrustStore  # noqa: PLC0415
    from digibridge.wus.digimelding_stub import SOAP_PATH, DigimeldingStub  # noqa: PLC0415

    if (client_ca or tls_key) and tls_cert is None:
        _fail("--tls-key and --client-ca need --tls-cert")
    tls: dict[str, Any] = {}
    if tls_cert is not None:
        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key) if tls_key else None}
        if client_ca is not None:
            tls |= {"ssl_ca_certs": str(client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    trust = TrustStore.load(signature_ca) if signature_ca else None
    scheme = "https" if tls_cert else "http"
    click.echo(f"DigiMelding stub on {scheme}://{host}:{port}{SOAP_PATH} (WSDL: ?wsdl)")
    sys.stdout.flush()
    uvicorn.run(
        DigimeldingStub(signature_trust=trust).app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        **tls,
    )
