"""`GET /v1/openapi.json`: the OpenAPI 3.1 document, shaped to the NL API Design Rules.

FastAPI generates the paths from the routes; everything the rules ask of every operation is
added here, generically, so a new route complies without hand-written documentation: the
server URL carries the major version (paths are relative to it), every response declares the
`API-Version` header, every error is `application/problem+json` with one shared `Problem`
schema, operation ids are lowerCamelCase, schema names UpperCamelCase, and the security schemes
are declared. The `webhooks` section lists one entry per event type of the loaded mappings
(plus digibridge's own types) and follows a reload: it is rebuilt when the mapping set changes.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import APIRouter, FastAPI, Request, params
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import iter_route_contexts

from digibridge.api._event_schemas import camel_case, documented_types, pascal_case
from digibridge.api._webhooks import add_webhooks
from digibridge.api.auth import PUBLIC_PATHS, ScopeRequirement
from digibridge.api.problems import PROBLEM_JSON
from digibridge.mapping.engine import MappingSet
from digibridge.runtime import Runtime

VERSION_PREFIX = "/v1"
OPENAPI_PATH = f"{VERSION_PREFIX}/openapi.json"
DOCS_PATH = f"{VERSION_PREFIX}/docs"

router = APIRouter()

DESCRIPTION = (
    "digibridge turns DigiLevering messages into NL GOV CloudEvents and delivers them as "
    "signed webhooks (see `webhooks`), keeps a pull feed of them, and sends terugmeldingen to "
    "the registries. Errors are RFC 9457 problem+json; every response carries API-Version. "
    "Operator documentation: docs/api.md."
)

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
_BODY_METHODS = ("post", "put", "patch")
_REF = "#/components/"

_TAGS = {
    "subscriptions": "Webhook subscriptions in the CloudEvents Subscriptions API shape",
    "event-types": "The event catalogue: every type, its meaning and its data schema",
    "events": "Stored events: the pull feed and the target of dataref",
    "deliveries": "The delivery log: attempts, dead letters, retries",
    "terugmeldingen": "Terugmeldingen (DigiMelding) to a basisregistratie",
    "admin": "Operator actions on the running gateway",
}

#: Errors every operation may answer, by status: (component name, description).
_STANDARD_ERRORS = {
    "400": ("BadRequest", "The request is not valid; invalidParams says where"),
    "401": ("Unauthorized", "No valid API key or access token (see WWW-Authenticate)"),
    "403": ("Forbidden", "The caller may not do this (scope, or not on loopback)"),
    "404": ("NotFound", "There is no such resource (or it belongs to another consumer)"),
    "415": ("UnsupportedMediaType", "The body is not application/json"),
    "429": ("TooManyRequests", "Too many requests; try again after Retry-After seconds"),
    "500": ("InternalServerError", "An unexpected error; the gateway keeps serving"),
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference", "default": "about:blank"},
        "title": {"type": "string", "description": "short summary of the problem type"},
        "status": {"type": "integer", "minimum": 100, "maximum": 599},
        "detail": {"type": "string", "description": "what went wrong in this occurrence"},
        "instance": {"type": "string", "format": "uri-reference"},
        "invalidParams": {
            "type": "array",
            "description": "the parameters or body members that are not valid",
            "items": {
                "type": "object",
                "required": ["name", "reason"],
                "properties": {
                    "name": {"type": "string", "description": "dotted path of the member"},
                    "reason": {"type": "string"},
                },
            },
        },
    },
}

_API_VERSION_HEADER = {
    "description": "The full version of the API (NL API Design Rules)",
    "required": True,
    "schema": {"type": "string", "pattern": r"^\d+\.\d+\.\d+"},
}

_RETRY_AFTER_HEADER = {
    "description": "Seconds to wait before the next request",
    "schema": {"type": "integer", "minimum": 0},
}

_SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key (DIGIBRIDGE_API_KEYS): Authorization: Bearer <key>. With no "
        "keys and no OAuth configured the API answers callers on loopback only.",
    },
    "oauth2": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An OAuth 2.0 access token (JWT, RS256 or ES256) from the configured "
        "issuer, for the configured audience; its scopes grant route families.",
    },
}


def _problem_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"API-Version": {"$ref": f"{_REF}headers/ApiVersion"}},
        "content": {PROBLEM_JSON: {"schema": {"$ref": f"{_REF}schemas/Problem"}}},
    }


class OpenApiDocument:
    """Builds the document of one app: the paths once (routes do not change after start),
    the webhooks once per mapping set."""

    def __init__(self, app: FastAPI, *, contact: dict[str, str]) -> None:
        self._app = app
        self._contact = contact
        self._base_document: dict[str, Any] | None = None
        self._built_for: MappingSet | None = None
        self._document: dict[str, Any] = {}

    def document(self, mappings: MappingSet) -> dict[str, Any]:
        if self._built_for is not mappings:
            document = copy.deepcopy(self._base())
            add_webhooks(document, documented_types(mappings))
            self._document, self._built_for = document, mappings
        return self._document

    def _base(self) -> dict[str, Any]:
        if self._base_document is None:
            app = self._app
            generated = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description or DESCRIPTION,
                routes=app.routes,
                license_info={"name": "EUPL-1.2", "identifier": "EUPL-1.2"},
                contact=self._contact,
            )
            self._base_document = conform(generated, scopes=route_scopes(app))
        return self._base_document


def _endpoint_name(operation_id: str, path: str, method: str) -> str:
    """The endpoint function's name from FastAPI's default operation id
    (`{name}{path}_{method}` with non-word characters as `_`); an id a route set itself stays."""
    suffix = re.sub(r"\W", "_", path) + f"_{method}"
    return operation_id.removesuffix(suffix) if operation_id.endswith(suffix) else operation_id


def route_scopes(app: FastAPI) -> dict[tuple[str, str], str]:
    """The scope each operation needs, `(path, method)` -> scope, from the routes'
    `ScopeRequirement` dependencies (api/auth.py)."""
    scopes: dict[tuple[str, str], str] = {}
    for context in iter_route_contexts(app.routes):
        # The context's dependencies are the route's with those of every router it is in.
        dependencies: list[params.Depends] = getattr(context, "dependencies", None) or []
        for dependency in dependencies:
            requirement = dependency.dependency
            if isinstance(requirement, ScopeRequirement) and context.path is not None:
                for method in context.methods or ():
                    scopes[(context.path, method.lower())] = requirement.needed(method)
    return scopes


def conform(
    document: dict[str, Any], *, scopes: dict[tuple[str, str], str] | None = None
) -> dict[str, Any]:
    """FastAPI's generated document, brought to the NL API Design Rules (see module doc).
    `scopes`: the scope per operation, named in its security requirements."""
    scopes = scopes or {}
    components = document.setdefault("components", {})
    renames = _rename_schemas(components)
    document = _replace_refs(document, renames)
    components = document["components"]
    schemas = components.setdefault("schemas", {})
    for name in ("HttpValidationError", "ValidationError"):
        schemas.pop(name, None)
    schemas["Problem"] = PROBLEM_SCHEMA
    components["headers"] = {"ApiVersion": _API_VERSION_HEADER, "RetryAfter": _RETRY_AFTER_HEADER}
    components["responses"] = {
        name: _problem_response(description) for name, description in _STANDARD_ERRORS.values()
    }
    components["responses"]["TooManyRequests"]["headers"]["Retry-After"] = {
        "$ref": f"{_REF}headers/RetryAfter"
    }
    components["securitySchemes"] = {
        **_SECURITY_SCHEMES,
        **components.get("securitySchemes", {}),
    }
    document["security"] = [{name: []} for name in components["securitySchemes"]]
    document["servers"] = [{"url": VERSION_PREFIX, "description": "this gateway, API v1"}]

    paths: dict[str, Any] = {}
    seen_ids: set[str] = set()
    for path, item in document.get("paths", {}).items():
        if not path.startswith(f"{VERSION_PREFIX}/"):
            continue  # /healthz, /readyz, /metrics: operational probes, outside the API
        for method, operation in item.items():
            if method in _METHODS:
                name = _endpoint_name(operation.get("operationId", method), path, method)
                operation["operationId"] = _unique(camel_case(name), seen_ids, method, path)
                _conform_operation(method, operation, public=_is_public(path))
                scope = scopes.get((path, method))
                if scope is not None and operation.get("security") != []:
                    # OpenAPI 3.1: for non-OAuth schemes the list names required roles.
                    operation["security"] = [
                        {name: [scope]} for name in components["securitySchemes"]
                    ]
        paths[path.removeprefix(VERSION_PREFIX)] = item
    document["paths"] = paths
    _nulls_may_be_left_out(document)
    document["tags"] = [
        {"name": tag, "description": _TAGS.get(tag, tag)} for tag in _tags_in_use(paths)
    ]
    return document


def _nulls_may_be_left_out(document: dict[str, Any]) -> None:
    """In the schemas of responses, a member that may be null is not required: routes leave
    null members out (`response_model_exclude_none`), and the document must allow both."""
    schemas = document["components"]["schemas"]
    pending = _schema_refs(
        [
            operation.get("responses", {})
            for item in document["paths"].values()
            for method, operation in item.items()
            if method in _METHODS
        ]
    )
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in schemas:
            continue
        seen.add(name)
        pending |= _schema_refs(schemas[name])
        _relax_nullable(schemas[name])


def _schema_refs(value: Any) -> set[str]:
    if isinstance(value, dict):
        found = {
            ref.removeprefix(f"{_REF}schemas/")
            for ref in [value.get("$ref")]
            if isinstance(ref, str) and ref.startswith(f"{_REF}schemas/")
        }
        for item in value.values():
            found |= _schema_refs(item)
        return found
    if isinstance(value, list):
        return set().union(*(_schema_refs(item) for item in value)) if value else set()
    return set()


def _nullable(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_nullable(option) for option in schema.get("anyOf", []) + schema.get("oneOf", []))


def _relax_nullable(schema: Any) -> None:
    if isinstance(schema, dict):
        properties = schema.get("properties", {})
        if "required" in schema and isinstance(properties, dict):
            required = [name for name in schema["required"] if not _nullable(properties.get(name))]
            if required:
                schema["required"] = required
            else:
                del schema["required"]
        for item in schema.values():
            _relax_nullable(item)
    elif isinstance(schema, list):
        for item in schema:
            _relax_nullable(item)


def _is_public(path: str) -> bool:
    """Open to everyone (no key or token), as the API's authentication decides."""
    return any(path == public or path.startswith(f"{public}/") for public in PUBLIC_PATHS)


def _unique(operation_id: str, seen: set[str], method: str, path: str) -> str:
    if operation_id in seen:
        operation_id = camel_case(f"{method} {path}")
    seen.add(operation_id)
    return operation_id


def _conform_operation(method: str, operation: dict[str, Any], *, public: bool) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    # Validation errors are answered 400 (problems.py), as the design rules ask.
    responses.pop("422", None)
    for status, response in responses.items():
        if "$ref" in response:
            continue
        headers = response.setdefault("headers", {})
        headers.setdefault("API-Version", {"$ref": f"{_REF}headers/ApiVersion"})
        if status[:1] in ("4", "5"):
            response["content"] = {PROBLEM_JSON: {"schema": {"$ref": f"{_REF}schemas/Problem"}}}
    parameters = operation.get("parameters", [])
    wanted = ["429", "500"]
    if public:
        operation["security"] = []
    else:
        wanted += ["401", "403"]
    if parameters or "requestBody" in operation or method in _BODY_METHODS:
        wanted.append("400")
    if any(parameter.get("in") == "path" for parameter in parameters):
        wanted.append("404")
    if "requestBody" in operation:
        wanted.append("415")
    for status in wanted:
        responses.setdefault(status, {"$ref": f"{_REF}responses/{_STANDARD_ERRORS[status][0]}"})
    operation["responses"] = dict(sorted(responses.items()))
    if "tags" not in operation:
        operation["tags"] = ["general"]


def _tags_in_use(paths: dict[str, Any]) -> list[str]:
    tags: list[str] = []
    for item in paths.values():
        for method, operation in item.items():
            if method in _METHODS:
                tags.extend(tag for tag in operation.get("tags", []) if tag not in tags)
    return tags


def _rename_schemas(components: dict[str, Any]) -> dict[str, str]:
    """Component schema names in UpperCamelCase; a model name that FastAPI had to qualify with
    its module (two models of one name) keeps the module as a prefix."""
    renames: dict[str, str] = {}
    schemas = components.get("schemas", {})
    taken: set[str] = set()
    for name in schemas:
        parts = name.split("__")
        wanted = pascal_case(parts[-1]) if len(parts) == 1 else pascal_case(parts[-2] + parts[-1])
        while wanted in taken:
            wanted += "Schema"
        taken.add(wanted)
        renames[name] = wanted
    components["schemas"] = {renames[name]: schema for name, schema in schemas.items()}
    return renames


def _replace_refs(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, dict):
        replaced = {key: _replace_refs(item, renames) for key, item in value.items()}
        ref = replaced.get("$ref")
        if isinstance(ref, str) and ref.startswith(f"{_REF}schemas/"):
            old = ref.removeprefix(f"{_REF}schemas/")
            replaced["$ref"] = f"{_REF}schemas/{renames.get(old, old)}"
        return replaced
    if isinstance(value, list):
        return [_replace_refs(item, renames) for item in value]
    return value


@router.get(OPENAPI_PATH, include_in_schema=False)
async def openapi_json(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    builder: OpenApiDocument = request.app.state.openapi
    return JSONResponse(builder.document(runtime.current_mappings()))


@router.get(DOCS_PATH, include_in_schema=False)
async def docs() -> HTMLResponse:
    """Swagger UI on the document (loads its scripts from a CDN)."""
    return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title="digibridge API")


def install(app: FastAPI, *, contact: dict[str, str]) -> None:
    """Serve the document (and Swagger UI); FastAPI's own `openapi_url` must be None."""
    app.state.openapi = OpenApiDocument(app, contact=contact)
    app.include_router(router)
