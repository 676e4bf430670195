"""The WSDL and XSD documents digibridge serves for its DigiLevering endpoint."""

from __future__ import annotations

import pytest
from lxml import etree

from digibridge.wus.digilevering import (
    OPERATIONS,
    SCHEMA_FILES,
    schema_document,
    wsdl_dir,
    wsdl_document,
)

URL = "https://gateway.example.nl/wus/digilevering"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
NS = {
    "wsdl": "http://schemas.xmlsoap.org/wsdl/",
    "soap": "http://schemas.xmlsoap.org/wsdl/soap/",
    "soap12": "http://schemas.xmlsoap.org/wsdl/soap12/",
    "wsam": "http://www.w3.org/2007/05/addressing/metadata",
    "xs": "http://www.w3.org/2001/XMLSchema",
}


@pytest.fixture(scope="module")
def wsdl() -> etree._Element:
    return etree.fromstring(wsdl_document(URL), PARSER)


def test_both_ports_point_at_the_service_url(wsdl):
    ports = wsdl.findall("wsdl:service/wsdl:port", NS)

    assert len(wsdl.findall("wsdl:service", NS)) == 1
    assert len(ports) == 2
    assert wsdl.xpath("//soap:address/@location", namespaces=NS) == [URL]
    assert wsdl.xpath("//soap12:address/@location", namespaces=NS) == [URL]


def test_schema_imports_point_at_the_served_xsd(wsdl):
    locations = wsdl.xpath("wsdl:types/xs:schema/xs:import/@schemaLocation", namespaces=NS)

    assert sorted(locations) == [f"{URL}?xsd=digibridge-wus.xsd", f"{URL}?xsd=digilevering.xsd"]


@pytest.mark.parametrize("operation", OPERATIONS.values(), ids=lambda op: op.name)
def test_every_operation_carries_its_actions(wsdl, operation):
    port_type_op = wsdl.find(f"wsdl:portType/wsdl:operation[@name='{operation.name}']", NS)
    wsam_action = f"{{{NS['wsam']}}}Action"

    assert port_type_op.find("wsdl:input", NS).get(wsam_action) == operation.action
    assert port_type_op.find("wsdl:output", NS).get(wsam_action) == operation.response_action
    soap11 = wsdl.xpath(
        f"wsdl:binding[soap:binding]/wsdl:operation[@name='{operation.name}']"
        "/soap:operation/@soapAction",
        namespaces=NS,
    )
    soap12 = wsdl.xpath(
        f"wsdl:binding[soap12:binding]/wsdl:operation[@name='{operation.name}']"
        "/soap12:operation/@soapAction",
        namespaces=NS,
    )
    assert soap11 == [operation.action]
    assert soap12 == [operation.action]


def test_request_parts_are_the_operation_body_elements(wsdl):
    """document/literal: each input message has one part, the Body child of its operation."""
    for operation in OPERATIONS.values():
        input_message = wsdl.find(
            f"wsdl:portType/wsdl:operation[@name='{operation.name}']/wsdl:input", NS
        ).get("message")
        local = input_message.partition(":")[2]
        part = wsdl.find(f"wsdl:message[@name='{local}']/wsdl:part", NS)
        prefix, _, name = part.get("element").partition(":")
        assert f"{{{part.nsmap[prefix]}}}{name}" == operation.request_element


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_every_schema_document_is_served_with_rewritten_locations(name):
    document = schema_document(name, URL)

    assert document is not None
    root = etree.fromstring(document, PARSER)
    assert root.tag == f"{{{NS['xs']}}}schema"
    for location in root.xpath(
        "xs:import/@schemaLocation | xs:include/@schemaLocation", namespaces=NS
    ):
        assert location.startswith(f"{URL}?xsd=")
        assert location.removeprefix(f"{URL}?xsd=") in SCHEMA_FILES


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "../wsdl/digilevering.xsd",
        "digilevering.wsdl",
        "DIGILEVERING.XSD",
        "digilevering.xsd\x00",
        "",
        ".",
    ],
)
def test_unknown_schema_names_are_not_served(name):
    assert schema_document(name, URL) is None


@pytest.mark.parametrize("name", ["digilevering.xsd", "digibridge-wus.xsd"])
def test_schema_files_compile(name):
    etree.XMLSchema(etree.parse(str(wsdl_dir() / name), PARSER))


def test_served_wsdl_is_a_fresh_document_each_time():
    """Serving for one URL never leaks into the document served for another."""
    first = wsdl_document("http://a.example/x")
    wsdl_document("http://b.example/y")

    assert b"b.example" not in first
    assert wsdl_document("http://a.example/x") == first
