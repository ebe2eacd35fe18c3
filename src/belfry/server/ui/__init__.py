"""The web UI: server-rendered pages (Jinja2) made live with htmx, at ``/``.

Read pages work without JavaScript; htmx adds live refresh, in-place actions and the run
page's live output (server-sent events). Every page is for a logged-in user (a browser
session); actions carry the session's CSRF token and are checked and audited exactly as
the API's (``server.operations``).
"""

from __future__ import annotations

from belfry.server.ui.app import mount_ui

__all__ = ["mount_ui"]
