"""/docs is Swagger UI from the installed package: the page names no other host, and its assets answer."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from strata.serve_apps.gateway._openapi import SWAGGER_ASSETS, install_openapi


def _client() -> TestClient:
    app = FastAPI(docs_url=None, redoc_url=None)
    install_openapi(app)
    return TestClient(app)


def test_the_docs_page_references_no_other_host() -> None:
    page = _client().get("/docs")

    assert page.status_code == 200
    assert re.findall(r"(?:https?:)?//[A-Za-z0-9.-]+", page.text) == []
    assets = set(re.findall(r"""(?:src|href)=["']?(/docs/assets/[^"' >]+)""", page.text))
    assert assets == {f"/docs/assets/{name}" for name in SWAGGER_ASSETS}
    assert '"validatorUrl": null' in page.text


def test_each_asset_answers_with_its_content_type_and_nothing_else_is_served() -> None:
    client = _client()
    for name, content_type in SWAGGER_ASSETS.items():
        response = client.get(f"/docs/assets/{name}")
        assert response.status_code == 200 and response.headers["content-type"] == content_type
        assert len(response.content) > 100
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert client.get("/docs/assets/..%2F__init__.py").status_code == 404
    assert client.get("/docs/assets/swagger-editor.js").status_code == 404
