"""The OpenAPI 3.0 document of the server (served by :mod:`api.routes.docs`), assembled from the
app itself.

Every URL rule's view function carries its operation as YAML after ``---`` in its docstring
(apispec-webframeworks' ``FlaskPlugin``), and the module that defines the view holds the
components its operations name: ``SCHEMAS`` (name -> schema) and ``PARAMETERS`` (name -> parameter
with its ``in``), e.g. :data:`api.routes.predict.SCHEMAS`. :func:`build_spec` collects them from
the modules of the app's view functions, so an operation and its schemas sit beside the code
that answers them, and deriving the paths from the live URL map means a route cannot be added
without appearing in the spec — a test checks that every rule is documented.

This module holds what every route shares: the error body (:data:`SCHEMAS`), the error responses
(:data:`RESPONSES`), the model-name path parameter (:data:`PARAMETERS`), the tags, and the
probability / nullable fragments the route modules build their schemas from.
"""

from __future__ import annotations

import importlib.metadata
import sys

from apispec import APISpec
from apispec_webframeworks.flask import FlaskPlugin
from flask import Flask, current_app

from model.preprocessing import MAX_IMAGE_PIXELS

PROB = {"type": "number", "minimum": 0, "maximum": 1}
PROB_OR_NULL = {"type": "number", "minimum": 0, "maximum": 1, "nullable": True}
STR_OR_NULL = {"type": "string", "nullable": True}

SCHEMAS: dict[str, dict] = {
    "Error": {
        "type": "object", "required": ["error", "message"],
        "properties": {"error": {"type": "string", "description": "stable machine-readable code"},
                       "message": {"type": "string", "description": "human-readable explanation"}},
    },
}

RESPONSES = {
    "BadRequest": "bad request (e.g. a file that is not a JPEG/PNG/WebP image, a truncated or empty "
                  "file, bad JSON or base64, a bad parameter)",
    "Forbidden": "forbidden (a path that escapes the image root; URL fetching disabled, host not "
                 "allowed, or a private address)",
    "NotFound": "not found (no such file under the image root, unknown model name)",
    "TooLarge": "too large (request body over the limit, too many images, an image over the pixel "
                "limit or a decompression bomb)",
    "UnsupportedMediaType": "wrong Content-Type",
    "NotReady": "the models are not loaded (yet, or loading failed)",
    "BadGateway": "the image URL could not be fetched",
    "GatewayTimeout": "the image URL or the model did not answer in time",
}

PARAMETERS = {
    "model_name": {"name": "name", "in": "path", "required": True, "description": "model name",
                   "schema": {"type": "string", "example": "planespotter"}},
}

TAGS = [
    {"name": "native", "description": "planespotter's own API"},
    {"name": "plumber", "description": "routes of the R plumber original, answered the same way"},
    {"name": "oip-v2", "description": "Open Inference Protocol v2 (KServe v2, Triton, MLServer)"},
    {"name": "tf-serving", "description": "TensorFlow Serving REST style"},
    {"name": "operations", "description": "probes, metrics, docs"},
]


def _version() -> str:
    try:
        return importlib.metadata.version("planespotter")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def limits(app: Flask) -> dict:
    """The upload limits ``app`` enforces (``x-limits`` of the spec's ``info``): request body
    bytes (``MAX_CONTENT_LENGTH``), images per request, pixels per image
    (:data:`model.preprocessing.MAX_IMAGE_PIXELS`) and bytes of one ``?url=`` download."""
    cfg = app.config
    return {"max_body_bytes": int(cfg.get("MAX_CONTENT_LENGTH") or 0),
            "max_images_per_request": int(cfg.get("MAX_IMAGES_PER_REQUEST", 0)),
            "max_image_pixels": int(MAX_IMAGE_PIXELS),
            "max_url_bytes": int(cfg.get("URL_MAX_BYTES", 0))}


def route_components(app: Flask) -> tuple[dict, dict]:
    """``(schemas, parameters)``: this module's shared ones, then the ``SCHEMAS`` and
    ``PARAMETERS`` of every module that defines one of ``app``'s view functions, in registration
    order.

    Raises:
        ValueError: two modules define a component of the same name.
    """
    modules = [sys.modules[__name__]]
    for view in app.view_functions.values():
        module = sys.modules.get(view.__module__)
        if module is not None and module not in modules:
            modules.append(module)
    schemas: dict[str, dict] = {}
    parameters: dict[str, dict] = {}
    for module in modules:
        for found, attr in ((schemas, "SCHEMAS"), (parameters, "PARAMETERS")):
            own = getattr(module, attr, {})
            clash = found.keys() & own.keys()
            if clash:
                raise ValueError(f"{module.__name__}.{attr} redefines OpenAPI components {sorted(clash)}")
            found.update(own)
    return schemas, parameters


def build_spec(app: Flask) -> dict:
    """The OpenAPI 3.0.3 document of ``app`` (every URL rule whose view has a YAML docstring).

    Returns:
        The spec as a JSON-ready dict.
    """
    lim = limits(app)
    limit_text = (f"Limits: a request body of at most {lim['max_body_bytes']} bytes "
                  f"({lim['max_body_bytes'] / 2**20:g} MiB; PLANESPOTTER_MAX_CONTENT_LENGTH), at most "
                  f"{lim['max_images_per_request']} images per request, at most {lim['max_image_pixels']} "
                  f"pixels per image (a 24 MP camera photo is 6000x4000 = 24000000), a `?url=` download of at "
                  f"most {lim['max_url_bytes']} bytes; over a limit the answer is 413 with a JSON error.")
    spec = APISpec(
        title="planespotter", version=_version(), openapi_version="3.0.3", plugins=[FlaskPlugin()],
        info={"description": "Airliner photo classifier: a Keras cascade, manufacturer then ICAO aircraft "
                             "type. Native JSON API, R plumber-compatible routes, Open Inference Protocol "
                             "v2 and TF Serving style routes. Errors are JSON "
                             '`{"error": <code>, "message": <text>}`. ' + limit_text,
              "license": {"name": "MIT"}, "x-limits": lim},
        tags=TAGS,
    )
    schemas, parameters = route_components(app)
    for name, schema in schemas.items():
        spec.components.schema(name, schema)
    for name, desc in RESPONSES.items():
        if name == "TooLarge":
            desc = (f"{desc}: `request_entity_too_large` (body over {lim['max_body_bytes']} bytes), "
                    f"`too_many_images` (over {lim['max_images_per_request']}), `too_large_image` (over "
                    f"{lim['max_image_pixels']} pixels), `url_too_large` (download over {lim['max_url_bytes']} bytes)")
        spec.components.response(name, {"description": desc, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    for name, param in parameters.items():
        spec.components.parameter(name, param["in"], {k: v for k, v in param.items() if k != "in"})
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        spec.path(view=app.view_functions[rule.endpoint], app=app)
    return spec.to_dict()


def get_spec() -> dict:
    """The current app's spec, built once."""
    cached = current_app.extensions.get("openapi")
    if cached is None:
        cached = current_app.extensions["openapi"] = build_spec(current_app)
    return cached
