"""The API reference page at ``/schema``: Swagger UI served from Kabar's own static files.

Litestar's render plugins load their UI from a CDN and start it with an inline script; this page
loads ``static/vendor/swagger-ui`` (swagger-ui-dist from npm, see its VERSION file) and
``static/js/api-docs.js``, so it runs under the same Content-Security-Policy as every page.
"""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request
from litestar.openapi.plugins import OpenAPIRenderPlugin

from kabar.web.endpoints import asset_url


class SelfHostedSwagger(OpenAPIRenderPlugin):
    def __init__(self, path: str = "/") -> None:
        super().__init__(path=path)

    def render(self, request: Request, openapi_schema: dict[str, Any]) -> bytes:
        title = escape(openapi_schema.get("info", {}).get("title", "API"))
        return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} reference</title>
<link rel="icon" href="{asset_url("favicon.svg")}">
<link rel="stylesheet" href="{asset_url("vendor/swagger-ui/swagger-ui.css")}">
</head>
<body>
<div id="api-docs" data-schema-url="{self.get_openapi_json_route(request)}"></div>
<script src="{asset_url("vendor/swagger-ui/swagger-ui-bundle.js")}"></script>
<script src="{asset_url("js/api-docs.js")}"></script>
</body>
</html>""".encode()
