"""The web page and the API docs page: files served from the image itself, nothing from a CDN."""

from pathlib import Path

from fastapi import Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from deployments import conditional

WEB = Path(__file__).resolve().parents[1] / "serve_app" / "web"
WEB_FILES = {"app.js": "text/javascript", "style.css": "text/css"}
SWAGGER_FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
                 "favicon-32x32.png": "image/png"}


def site_file(path: Path, media_type: str, request: Request) -> Response:
    """A file of the web page, which a browser keeps but asks about each time (``no-cache``): 304 while it has it.

    Without a ``Cache-Control`` browsers guessed how long the files stay fresh from their age (a tenth of it: days,
    for files as old as an image build), so after an upgrade a browser could run the old ``app.js`` against the new
    page, or the reverse.
    """
    answer = FileResponse(path, media_type=media_type, stat_result=path.stat(),
                          headers={"Cache-Control": "no-cache"})
    tag = answer.headers["etag"]
    if conditional.names(request.headers.get("if-none-match", ""), tag.strip('"')):
        return Response(status_code=304, headers={"ETag": tag, "Cache-Control": "no-cache"})
    return answer


def swagger_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def docs_page() -> HTMLResponse:
    """The OpenAPI spec rendered by Swagger UI from locally served files (works with no internet)."""
    return get_swagger_ui_html(openapi_url="/docs/openapi.json", title="show-off OCR API",
                               swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                               swagger_css_url="/static/swagger/swagger-ui.css",
                               swagger_favicon_url="/static/swagger/favicon-32x32.png")

