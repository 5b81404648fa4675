"""The /docs page: served from the package, under a self-only Content-Security-Policy."""

from __future__ import annotations

import re

import httpx
import pytest
from starlette.applications import Starlette

from charpente.http.docs import docs_routes


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = Starlette(routes=docs_routes())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.anyio
async def test_the_docs_page_loads_only_same_origin_assets(client: httpx.AsyncClient) -> None:
    async with client:
        page = await client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources
        for source in sources:
            assert source.startswith("/docs/static/")
            asset = await client.get(source)
            assert asset.status_code == 200, source


@pytest.mark.anyio
async def test_the_docs_page_forbids_inline_scripts(client: httpx.AsyncClient) -> None:
    async with client:
        page = await client.get("/docs")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    assert re.search(r"<script>\s*\S", page.text) is None  # every script is a file


@pytest.mark.anyio
async def test_the_init_script_renders_the_openapi_document(client: httpx.AsyncClient) -> None:
    async with client:
        script = await client.get("/docs/static/docs.js")
    assert "SwaggerUIBundle" in script.text
    assert '"/openapi.json"' in script.text


@pytest.mark.anyio
async def test_the_static_mount_serves_no_file_outside_its_folder(
    client: httpx.AsyncClient,
) -> None:
    async with client:
        answer = await client.get("/docs/static/..%2Fdocs.py")
    assert answer.status_code == 404
