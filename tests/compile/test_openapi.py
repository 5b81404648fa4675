"""The OpenAPI document: valid 3.1, and faithful to the design and to the HTTP contract."""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

import pytest

from charpente.compile.openapi import openapi_document, schema_name
from charpente.design.model import CountSource, Default, Design, Field, Kind, Resource
from charpente.loader import load_design_text


def validate(document: Any) -> None:
    """Validate with openapi-spec-validator (the test skips where it is not installed)."""
    pytest.importorskip("openapi_spec_validator").validate(document)


AUTHORS = Resource(
    "authors",
    (
        Field("handle", Kind.STRING, required=True, unique=True, pattern="^[a-z0-9_]{3,30}$"),
        Field("email", Kind.EMAIL, required=True),
        Field("password", Kind.STRING, required=True, writeonly=True, min_length=8),
        Field("bio", Kind.TEXT, max_length=500, description="A few words."),
        Field("homepage", Kind.URL),
        Field("karma", Kind.INT, readonly=True, default=Default(0)),
        Field("post_count", Kind.COUNT, count=CountSource("posts", "author")),
    ),
)
POSTS = Resource(
    "posts",
    (
        Field("author", Kind.REF, ref="authors", required=True, immutable=True),
        Field("body", Kind.TEXT, required=True, max_length=2000),
        Field("visibility", Kind.ENUM, choices=("public", "private"), default=Default("public")),
        Field("score", Kind.FLOAT, minimum=0, maximum=5),
        Field(
            "price", Kind.DECIMAL, precision=10, scale=2, default=Default(decimal.Decimal("1.50"))
        ),
        Field("pinned", Kind.BOOL, default=Default(False)),
        Field("publish_on", Kind.DATE, default=Default(datetime.date(2026, 1, 1))),
        Field("published_at", Kind.DATETIME, default=Default(now=True)),
        Field("extra", Kind.JSON),
        Field("external_id", Kind.UUID),
    ),
    require_if_match=True,
    description="Things people write.",
)
EVERY_KIND = Design("every_kind", 2, {"authors": AUTHORS, "posts": POSTS})


def document(design: Design = EVERY_KIND) -> Any:
    """The document, typed loosely: tests index deep into it."""
    return openapi_document(design)


def schemas(doc: Any) -> Any:
    return doc["components"]["schemas"]


def test_a_design_with_every_field_kind_gives_a_valid_openapi_31_document() -> None:
    doc = document()
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"] == {
        "title": "every_kind",
        "version": "2",
        "description": "The REST API of the `every_kind` design, served by charpente.",
    }
    assert doc["servers"] == [{"url": "/"}]
    json.dumps(doc)  # plain JSON all the way down


def test_the_social_template_gives_a_valid_openapi_31_document() -> None:
    loader = pytest.importorskip("charpente.loader")
    templates = pytest.importorskip("charpente.templates")
    design = loader.load_design_text(templates.template_text("social"), "social.yaml")
    doc = openapi_document(design)
    validate(doc)
    assert "/v1/posts" in doc["paths"]


def test_every_resource_has_its_paths_and_operation_ids() -> None:
    paths = document()["paths"]
    assert paths["/v2/posts"]["get"]["operationId"] == "listPosts"
    assert paths["/v2/posts"]["post"]["operationId"] == "createPost"
    item = paths["/v2/posts/{id}"]
    assert [item[m]["operationId"] for m in ("get", "patch", "delete")] == [
        "getPost",
        "updatePost",
        "deletePost",
    ]
    assert item["get"]["tags"] == ["posts"]
    assert {"/healthz", "/readyz", "/v2/authors", "/v2/authors/{id}"} <= set(paths)


def test_writeonly_fields_are_absent_from_responses_and_marked_in_bodies() -> None:
    found = schemas(document())
    assert "password" not in found["Author"]["properties"]
    create = found["AuthorCreate"]["properties"]["password"]
    assert create["writeOnly"] is True
    assert create["minLength"] == 8


def test_readonly_system_and_counter_fields_are_absent_from_bodies() -> None:
    found = schemas(document())
    for body in ("AuthorCreate", "AuthorPatch"):
        properties = found[body]["properties"]
        for name in ("id", "created_at", "updated_at", "version", "karma", "post_count"):
            assert name not in properties
        assert found[body]["additionalProperties"] is False
    record = found["Author"]["properties"]
    for name in ("id", "version", "karma", "post_count"):
        assert record[name]["readOnly"] is True


def test_immutable_fields_can_be_created_but_not_patched() -> None:
    found = schemas(document())
    assert "author" in found["PostCreate"]["properties"]
    assert "author" not in found["PostPatch"]["properties"]
    assert found["PostCreate"]["required"] == ["author", "body"]
    assert "required" not in found["PostPatch"]


def test_field_kinds_map_to_json_schema_formats_and_limits() -> None:
    found = schemas(document())
    author = found["AuthorCreate"]["properties"]
    post = found["PostCreate"]["properties"]
    assert author["handle"] == {"type": "string", "maxLength": 255, "pattern": "^[a-z0-9_]{3,30}$"}
    assert author["email"] == {"type": "string", "format": "email", "maxLength": 254}
    assert author["homepage"]["format"] == "uri"
    assert author["homepage"]["maxLength"] == 2048
    assert author["homepage"]["type"] == ["string", "null"]
    assert author["bio"]["maxLength"] == 500
    assert post["body"]["maxLength"] == 2000
    assert post["visibility"]["enum"] == ["public", "private"]
    assert post["visibility"]["default"] == "public"
    assert (post["score"]["minimum"], post["score"]["maximum"]) == (0, 5)
    assert post["price"]["pattern"] == "^-?[0-9]{1,8}(\\.[0-9]{1,2})?$"
    assert post["price"]["default"] == "1.50"
    assert post["publish_on"]["format"] == "date"
    assert post["publish_on"]["default"] == "2026-01-01"
    assert post["published_at"]["format"] == "date-time"
    assert "default" not in post["published_at"]
    assert post["external_id"]["format"] == "uuid"
    assert post["author"]["format"] == "uuid"


def test_a_text_field_without_max_length_gets_the_engine_ceiling() -> None:
    resource = Resource("notes", (Field("body", Kind.TEXT),))
    found = schemas(document(Design("n", 1, {"notes": resource})))
    assert found["NoteCreate"]["properties"]["body"]["maxLength"] == 65_535


def test_a_reference_in_a_response_may_be_expanded_to_the_record() -> None:
    author = schemas(document())["Post"]["properties"]["author"]
    assert {"$ref": "#/components/schemas/Author"} in author["anyOf"]


def test_every_error_status_of_an_operation_is_a_problem_response() -> None:
    doc = document()
    paths = doc["paths"]
    statuses = {
        (path, method): {s for s in op["responses"] if s >= "400"}
        for path, item in paths.items()
        for method, op in item.items()
        if method != "parameters" and path.startswith("/v2/")
    }
    assert statuses[("/v2/posts", "post")] == {
        "400",
        "401",
        "403",
        "406",
        "409",
        "413",
        "415",
        "422",
        "429",
        "500",
        "503",
    }
    assert statuses[("/v2/posts/{id}", "patch")] >= {"404", "409", "412", "428", "422"}
    assert "428" not in statuses[("/v2/authors/{id}", "patch")]
    responses = doc["components"]["responses"]
    for response in responses.values():
        content = response["content"]["application/problem+json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
    problem = schemas(doc)["Problem"]["properties"]
    assert {"type", "title", "status", "detail", "instance", "request_id", "errors"} <= set(problem)


def test_headers_of_the_contract_are_documented() -> None:
    paths = document()["paths"]
    created = paths["/v2/posts"]["post"]["responses"]["201"]["headers"]
    assert set(created) == {"Location", "ETag", "X-Request-ID"}
    assert "Link" in paths["/v2/posts"]["get"]["responses"]["200"]["headers"]
    patch = paths["/v2/posts/{id}"]["patch"]
    assert patch["parameters"][0]["name"] == "If-Match"
    assert patch["parameters"][0]["required"] is True
    assert set(patch["requestBody"]["content"]) == {
        "application/merge-patch+json",
        "application/json",
    }
    listing = [p["$ref"].rsplit("/", 1)[1] for p in paths["/v2/posts"]["get"]["parameters"]]
    assert listing == ["filter", "sort", "limit", "cursor", "fields", "expand", "count"]
    create_params = paths["/v2/posts"]["post"]["parameters"]
    assert create_params == [{"$ref": "#/components/parameters/Idempotency-Key"}]


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("posts", "Post"),
        ("blog_posts", "BlogPost"),
        ("categories", "Category"),
        ("likes", "Like"),
        ("addresses", "Address"),
        ("news", "New"),
        ("status", "Status"),
    ],
)
def test_schema_names_are_singular_pascal_case(resource: str, expected: str) -> None:
    assert schema_name(resource) == expected


def test_resources_named_like_the_apis_own_schemas_do_not_replace_them() -> None:
    design = load_design_text(
        "charpente: 1\nname: clash\nresources:\n"
        "  page: {fields: {title: string}}\n"
        "  problem: {fields: {text: string}}\n"
    )
    doc: Any = openapi_document(design)
    validate(doc)
    schemas = doc["components"]["schemas"]
    assert set(schemas["Page"]["properties"]) == {"limit", "next_cursor", "total"}
    assert "detail" in schemas["Problem"]["properties"]
    assert "title" in schemas["PageRecord"]["properties"]
    assert "text" in schemas["ProblemRecord"]["properties"]
