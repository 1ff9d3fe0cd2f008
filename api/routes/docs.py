"""The OpenAPI description of the server (``GET /openapi.json``, assembled by :mod:`api.spec`)
and its interactive docs (``GET /__docs__/``, plumber's path).

The docs page is Swagger UI from the ``swagger-ui-bundle`` wheel, served from the package's files
(no CDN; works offline). Without that package, a plain HTML listing of the spec is served.
"""

from __future__ import annotations

import html

from flask import Blueprint, Response, jsonify, send_from_directory

from ..errors import APIError
from ..spec import get_spec

try:
    import swagger_ui_bundle
except ImportError:  # optional: the docs page falls back to a plain listing
    swagger_ui_bundle = None

bp = Blueprint("docs", __name__)


def _swagger_ui_dir():
    if swagger_ui_bundle is None:
        return None
    return str(swagger_ui_bundle.swagger_ui_path)


SWAGGER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>planespotter API docs</title>
<link rel="stylesheet" href="swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="swagger-ui-bundle.js"></script>
<script src="swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "../openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
</script></body></html>
"""


def _plain_page(spec: dict) -> str:
    rows = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            rows.append(f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op.get('summary', ''))}</td></tr>")
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>planespotter API</title></head>"
            "<body><h1>planespotter API</h1><p>OpenAPI: <a href='../openapi.json'>/openapi.json</a></p>"
            f"<table>{''.join(rows)}</table></body></html>")


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI description of this server.
    ---
    get:
      tags: [operations]
      summary: OpenAPI 3.0 description of every route
      responses:
        "200":
          description: the OpenAPI document
          content:
            application/json:
              schema: {type: object}
    """
    return jsonify(get_spec())


@bp.get("/__docs__/")
def docs_index():
    """Interactive API docs (Swagger UI, served offline).
    ---
    get:
      tags: [operations]
      summary: Interactive API docs (plumber's path)
      responses:
        "200":
          description: Swagger UI page
          content:
            text/html:
              schema: {type: string}
    """
    if _swagger_ui_dir() is None:
        return Response(_plain_page(get_spec()), mimetype="text/html")
    return Response(SWAGGER_PAGE, mimetype="text/html")


@bp.get("/__docs__/<path:filename>")
def docs_asset(filename):
    """Swagger UI's static files.
    ---
    get:
      tags: [operations]
      summary: Static files of the docs page (Swagger UI assets)
      parameters:
        - name: filename
          in: path
          required: true
          schema: {type: string}
      responses:
        "200":
          description: the file
          content:
            application/javascript:
              schema: {type: string}
            text/css:
              schema: {type: string}
        "404": {$ref: "#/components/responses/NotFound"}
    """
    folder = _swagger_ui_dir()
    if folder is None:
        raise APIError(404, "not_found", "Swagger UI assets are not installed")
    return send_from_directory(folder, filename, max_age=3600)
