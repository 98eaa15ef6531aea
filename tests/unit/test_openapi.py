"""The OpenAPI document, as generated from the route table and the models (no services needed)."""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from typing import Any

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel

from api import auth, openapi, schemas
from api.routes import ROUTES
from shared.models import Product
from shared.readmodel import render

DOC = openapi.build()
OPERATIONS = [
    (path, method, op) for path, item in DOC["paths"].items() for method, op in item.items() if isinstance(op, dict)
]


def _deref(ref: str) -> Any:
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOC["openapi"] == "3.1.0"
    validate(DOC)


def test_every_route_has_a_spec() -> None:
    undocumented = [(m, p) for m, p, h in ROUTES if h not in openapi.SPECS and h not in openapi.HIDDEN]

    assert undocumented == [], "add an Op for each to api/openapi.py SPECS"


def test_every_route_is_one_operation_and_trailing_slashes_are_not() -> None:
    expected = {(openapi.openapi_path(p), m.lower()) for m, p, h in ROUTES if h not in openapi.HIDDEN}

    assert {(p, m) for p, m, _ in OPERATIONS} == expected
    assert not [p for p in DOC["paths"] if p.endswith("/") or ":" in p]


def test_operation_ids_are_unique() -> None:
    ids = [op["operationId"] for _, _, op in OPERATIONS]

    assert len(ids) == len(set(ids))


def test_path_parameters_match_the_path() -> None:
    for path, method, op in OPERATIONS:
        declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def test_protected_operations_name_the_bearer_scheme_and_answer_401_and_403() -> None:
    assert DOC["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": DOC["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for method, path, handler in ROUTES:
        if handler in openapi.HIDDEN:
            continue
        op = DOC["paths"][openapi.openapi_path(path)][method.lower()]
        scope = auth.required_scope(handler)
        if scope is None:
            assert "security" not in op, (method, path)
            assert "401" not in op["responses"]
        else:
            assert op["security"] == [{"bearerAuth": []}]
            assert op["x-required-scope"] == scope
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_errors_are_problem_documents() -> None:
    for status, response in DOC["components"]["responses"].items():
        media = response["content"]["application/problem+json"]
        assert media["schema"] == {"$ref": "#/components/schemas/Problem"}
        schemas.Problem.model_validate(media["example"])
        assert media["example"]["status"] == int(status)
    assert DOC["components"]["responses"]["503"]["headers"]["Retry-After"]["required"] is True
    assert DOC["components"]["responses"]["429"]["headers"]["Retry-After"]["required"] is True


def test_conditional_reads_document_etag_if_none_match_and_304() -> None:
    op = DOC["paths"]["/api/products/{slug}"]["get"]

    assert {"$ref": "#/components/parameters/IfNoneMatch"} in op["parameters"]
    assert op["responses"]["200"]["headers"]["ETag"]["required"] is True
    assert "content" not in op["responses"]["304"]
    assert set(op["responses"]) == {"200", "304", "404", "429", "503"}


def test_writes_document_if_match_and_creates_the_idempotency_key() -> None:
    put = DOC["paths"]["/api/categories/{slug}"]["put"]
    post = DOC["paths"]["/api/categories"]["post"]

    assert {"$ref": "#/components/parameters/IfMatch"} in put["parameters"]
    assert {"400", "401", "403", "404", "409", "412", "413", "415", "422", "429", "503"} == set(put["responses"]) - {
        "200"
    }
    assert {"$ref": "#/components/parameters/IdempotencyKey"} in post["parameters"]
    assert post["responses"]["201"]["headers"]["Location"]["required"] is True


def test_request_bodies_are_the_validating_models() -> None:
    def body_ref(path: str, method: str, ctype: str = "application/json") -> str:
        ref: str = DOC["paths"][path][method]["requestBody"]["content"][ctype]["schema"]["$ref"]
        return ref

    assert body_ref("/api/categories", "post") == "#/components/schemas/CategoryIn"
    assert body_ref("/api/products/{slug}", "put") == "#/components/schemas/ProductIn"
    assert body_ref("/hello/{username}", "put") == "#/components/schemas/BirthdayIn"
    assert body_ref("/api/products/{slug}", "patch", "application/merge-patch+json") == (
        "#/components/schemas/ProductPatch"
    )
    assert DOC["components"]["schemas"]["CategoryIn"] == _component(schemas.CategoryIn, "validation")
    patch = DOC["components"]["schemas"]["ProductPatch"]
    assert "required" not in patch
    assert set(patch["properties"]) == set(schemas.ProductIn.model_fields)


def _component(model: type[BaseModel], mode: str) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template=openapi.REF, mode=mode)  # type: ignore[arg-type]
    schema.pop("$defs", None)
    return schema


def test_image_upload_takes_the_four_types_raw_or_as_multipart() -> None:
    body = DOC["paths"]["/api/products/{slug}/image"]["put"]["requestBody"]

    assert set(body["content"]) == {"image/jpeg", "image/png", "image/webp", "image/gif", "multipart/form-data"}
    assert body["content"]["image/png"]["schema"] == {"type": "string", "format": "binary"}
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["image"]
    assert form["properties"]["image"]["format"] == "binary"


@pytest.mark.parametrize(("path", "method"), [(p, m) for p, m, op in OPERATIONS if "requestBody" in op])
def test_request_examples_pass_their_own_validation(path: str, method: str) -> None:
    content = DOC["paths"][path][method]["requestBody"]["content"]
    for media in content.values():
        if "example" not in media:
            continue
        name = media["schema"]["$ref"].rsplit("/", 1)[-1]
        if name.endswith("Patch"):
            continue  # a patch is validated after it is applied
        getattr(schemas, name).model_validate(media["example"])


def test_component_schemas_hold_only_json_schema_keywords() -> None:
    # pydantic writes constraints it cannot translate as they are ("ge", "max_digits"): no tool understands them.
    text = json.dumps(DOC["components"]["schemas"])

    for word in ("ge", "le", "gt", "lt", "max_digits", "decimal_places", "strict"):
        assert f'"{word}":' not in text, word


def test_examples_in_response_models_are_valid() -> None:
    for name, schema in DOC["components"]["schemas"].items():
        model = getattr(schemas, name, None)
        if model is None or not name.endswith(
            ("Out", "Result", "Created", "Accepted", "Problem", "Greeting", "Health")
        ):
            continue
        for example in schema.get("examples", []):
            model.model_validate(example)


def test_a_product_with_thumbnails_matches_its_model() -> None:
    now = dt.datetime.now(dt.UTC)
    p = Product(
        id=1,
        slug="steel-spade",
        name="Steel spade",
        description=None,
        price=Decimal("19.9"),
        currency="EUR",
        category="garden-tools",
        stock=0,
        attributes={"a": [1, {"b": None}]},
        is_active=True,
        image_status="ready",
        image_original="originals/ab/cd/" + "a" * 64 + ".png",
        image_thumbnails={
            "small": {
                "width": 160,
                "height": 90,
                "key": "thumbs/ab/cd/" + "b" * 64 + ".webp",
                "format": "webp",
                "fallback": {"key": "thumbs/ab/cd/" + "c" * 64 + ".jpg", "format": "jpeg"},
            }
        },
        image_error=None,
        created_at=now,
        updated_at=now,
        version=3,
    )

    out = schemas.ProductOut.model_validate(json.loads(render.dumps(render.product(p, "/media/"))))

    assert out.image.thumbnails["small"].fallback is not None
    assert out.price == "19.90"


def _defaults(node: Any, where: str, seen: set[str]) -> list[str]:
    """Where ``default`` appears in ``node`` or in any schema it references."""
    found: list[str] = []
    if isinstance(node, dict):
        if "default" in node:
            found.append(where)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            found += _defaults(_deref(ref), ref, seen)
        for key, value in node.items():
            if key not in ("examples", "example", "enum", "const"):
                found += _defaults(value, f"{where}/{key}", seen)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _defaults(value, f"{where}/{i}", seen)
    return found


def test_no_merge_patch_schema_carries_a_default_so_a_generated_client_sends_only_what_it_sets() -> None:
    # A client generated from the document (openapi-python-client) fills in every default the caller left out:
    # in a merge patch that resets the field (a rename set stock to 0 and reactivated the product).
    patches = {name: s for name, s in DOC["components"]["schemas"].items() if name.endswith("Patch")}
    bodies = {
        op["requestBody"]["content"][ctype]["schema"]["$ref"]
        for _, method, op in OPERATIONS
        if method == "patch"
        for ctype in op["requestBody"]["content"]
    }

    assert set(patches) == {"CategoryPatch", "ProductPatch"}
    assert bodies == {f"#/components/schemas/{name}" for name in patches}
    for name, schema in patches.items():
        assert _defaults(schema, name, set()) == []
        assert "required" not in schema
        assert "left out keeps its value" in schema["description"]
    # The full bodies (POST, PUT) keep theirs: there, a field left out does mean its default.
    assert DOC["components"]["schemas"]["ProductIn"]["properties"]["stock"]["default"] == 0


def test_removing_defaults_keeps_fields_named_default_and_example_values() -> None:
    schema = {
        "properties": {"default": {"type": "string", "default": "x"}, "n": {"type": "integer", "default": 0}},
        "examples": [{"default": 1}],
        "anyOf": [{"default": None}],
    }

    assert openapi._without_defaults(schema) == {
        "properties": {"default": {"type": "string"}, "n": {"type": "integer"}},
        "examples": [{"default": 1}],
        "anyOf": [{}],
    }


def test_every_write_that_leaves_a_representation_documents_its_new_etag() -> None:
    writes = [
        (path, method, op)
        for path, method, op in OPERATIONS
        if method in ("post", "put", "patch") and not path.startswith("/hello")
    ]

    assert len(writes) >= 12
    for path, method, op in writes:
        ok = [status for status in op["responses"] if status.startswith("2")]
        assert ok, (method, path)
        for status in ok:
            assert "ETag" in op["responses"][status]["headers"], (method, path, status)
