"""``GET /``: a small web page to upload or drop a photo and see both stages, their probabilities
and the top-k pairs (plain HTML + JavaScript, no external assets; it calls ``POST /predict``)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response

bp = Blueprint("web", __name__)

PAGE = Path(__file__).resolve().parents[1] / "web" / "index.html"


@bp.get("/")
def index():
    """The upload page.
    ---
    get:
      tags: [native]
      summary: Web page to classify a photo from the browser
      responses:
        "200":
          description: HTML page
          content:
            text/html:
              schema: {type: string}
    """
    return Response(PAGE.read_bytes(), mimetype="text/html")
