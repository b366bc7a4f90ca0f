"""The body schemas of the routes that read their raw bodies (carrier webhooks from the
carrier table, shipments), added to the OpenAPI document's components."""

from __future__ import annotations

from typing import Any

import msgspec

from services.ingest.carriers import CARRIERS
from services.ingest.carriers.source import Carrier
from services.ingest.shipments import CancellationIn, ShipmentIn

_REF_TEMPLATE = "#/components/schemas/{name}"
_DOCUMENTED_TYPES: list[Any] = list(
    dict.fromkeys(kind for row in CARRIERS for kinds in row.bodies.values() for kind in kinds)
)
_SCHEMAS, OPENAPI_COMPONENTS = msgspec.json.schema_components(_DOCUMENTED_TYPES, ref_template=_REF_TEMPLATE)
_SCHEMA_OF: dict[Any, dict[str, Any]] = dict(zip(_DOCUMENTED_TYPES, _SCHEMAS, strict=True))
for _key, _model in (("ShipmentIn", ShipmentIn), ("CancellationIn", CancellationIn)):
    _schema = _model.model_json_schema(ref_template="#/components/schemas/{model}")
    OPENAPI_COMPONENTS.update(_schema.pop("$defs", {}))
    OPENAPI_COMPONENTS[_key] = _schema

_SHIPMENT_REF = {"$ref": "#/components/schemas/ShipmentIn"}
SHIPMENTS_SCHEMA = {"oneOf": [_SHIPMENT_REF, {"type": "array", "items": _SHIPMENT_REF, "maxItems": 10_000}]}
CANCELLATION_SCHEMA = {"$ref": "#/components/schemas/CancellationIn"}


def webhook_body(carrier: Carrier) -> dict[str, Any]:
    """``openapi_extra`` of a carrier's webhook: each media type's body, ``oneOf`` where a
    carrier sends several shapes."""
    content = {}
    for media, kinds in carrier.bodies.items():
        schemas = [_SCHEMA_OF[kind] for kind in kinds]
        content[media] = {"schema": schemas[0] if len(schemas) == 1 else {"oneOf": schemas}}
    return {"requestBody": {"required": True, "content": content}}
