"""The web console for admins and managers (``console/``, built into ``console/dist`` by
``make console``), served at ``/console`` like the ``/docs`` assets: a static handler, not an API
operation. It calls only the public API under ``/api/v1``.

Vite's hashed files under ``assets/`` never change under the same name, so they are cached for a
year (``immutable``); ``index.html`` names them and is revalidated on every visit (``no-cache``), so
a new build is picked up at once. Every other path under ``/console/`` is one of the console's own
pages and is answered with ``index.html`` (the page reads the path); a missing asset is 404.
"""

from __future__ import annotations

import os
from datetime import datetime

from tornado.web import HTTPError, RedirectHandler, StaticFileHandler

CONSOLE_DIST = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "console", "dist")
INDEX = "index.html"
ASSETS = "assets/"


class ConsoleHandler(StaticFileHandler):
    def parse_url_path(self, url_path: str) -> str:
        root = os.path.abspath(self.root)
        target = os.path.abspath(os.path.join(root, url_path))
        if url_path.startswith(ASSETS) or not target.startswith(root + os.sep):
            return url_path  # an asset (404 when missing) or outside the build (refused below)
        return url_path if os.path.isfile(target) else INDEX

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        if not os.path.isfile(os.path.join(root, INDEX)):
            raise HTTPError(503, reason="Console not built (make console)")
        return super().validate_absolute_path(root, absolute_path)

    def get_cache_time(self, path: str, modified: datetime | None, mime_type: str) -> int:
        return 0  # Cache-Control is set below, by kind of file

    def set_extra_headers(self, path: str) -> None:
        hashed = path.replace(os.sep, "/").startswith(ASSETS)
        self.set_header("Cache-Control", "public, max-age=31536000, immutable" if hashed else "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
        if not hashed:
            self.set_header("X-Frame-Options", "DENY")


def console_routes(dist: str) -> list[tuple[str, type, dict[str, str]]]:
    """The console's routes serving the build in ``dist``."""
    return [
        (r"/console", RedirectHandler, {"url": "/console/"}),
        (r"/console/(.*)", ConsoleHandler, {"path": dist, "default_filename": INDEX}),
    ]


static_routes = console_routes(CONSOLE_DIST)
