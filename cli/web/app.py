"""The dashboard's routes: pages, the JSON API, `/metrics` and `/healthz`.

Read-only. Every route but ``/healthz``, the login form and the static assets needs the
token (``auth.Gate``): a request without it gets 401 (a page shows the login form). Pages
refresh themselves: ``static/app.js`` fetches the page's main block again every 2 s
(``?fragment=1``), so nothing is loaded from the internet and no page reloads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.datastructures import URL
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Receive, Scope, Send

from cli.json_output import as_json
from cli.web.auth import COOKIE, SESSION_SECONDS, Gate
from cli.web.data import Dashboard, when
from cli.web.metrics import exposition
from mqi_es.core.states import CaseState

HERE = Path(__file__).parent
OPEN_PATHS = ("/healthz", "/login", "/static/")
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def create_app(dashboard: Dashboard, token: str) -> Starlette:
    gate = Gate(token)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
    templates = Jinja2Templates(env=env)
    templates.env.globals["when"] = when
    pages = Pages(dashboard, templates, gate)
    routes = [
        Route("/healthz", pages.healthz),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/", pages.overview),
        Route("/cases", pages.cases),
        Route("/cases/{case_id:path}", pages.case),
        Route("/slots", pages.slots),
        Route("/alarms", pages.alarms),
        Route("/api/status", pages.api_status),
        Route("/api/cases", pages.api_cases),
        Route("/api/cases/{case_id:path}/history", pages.api_history),
        Route("/api/cases/{case_id:path}", pages.api_case),
        Route("/api/slots", pages.api_slots),
        Route("/api/alarms", pages.api_alarms),
        Route("/metrics", pages.metrics),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guarded, gate=gate, pages=pages)])


class Guarded:
    """Lets through only requests that show the token (but the open paths), and puts the
    security headers on every answer."""

    def __init__(self, app: ASGIApp, gate: Gate, pages: Pages) -> None:
        self.app, self.gate, self.pages = app, gate, pages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websocket, nor anything else, is served
            raise RuntimeError(f"{scope['type']} is not served")

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        request = Request(scope)
        path = scope["path"]  # what routing uses (not a URL rebuilt from the Host header)
        open_path = any(path == p or (p.endswith("/") and path.startswith(p)) for p in OPEN_PATHS)
        shown = request.headers.get("authorization"), request.cookies.get(COOKIE)
        if open_path or self.gate.admits(*shown):
            await self.app(scope, receive, with_headers)
            return
        refused = self.pages.refused(request, wrong=shown[0] is not None)
        await refused(scope, receive, with_headers)


class Pages:
    def __init__(self, dashboard: Dashboard, templates: Jinja2Templates, gate: Gate) -> None:
        self.dashboard, self.templates, self.gate = dashboard, templates, gate

    # --- access ------------------------------------------------------------------------

    def refused(self, request: Request, *, wrong: bool) -> Response:
        why = "wrong token" if wrong else "the token is needed"
        if _wants_json(request):
            return JSONResponse({"error": why}, status_code=401,
                                headers={"www-authenticate": 'Bearer realm="mqi"'})  # fmt: skip
        return self._login_page(request, request.url.path, error=why if wrong else "")

    def login_form(self, request: Request) -> Response:
        return self._login_page(request, _safe_next(request.query_params.get("next")), "", 200)

    async def login(self, request: Request) -> Response:
        form = await request.form()
        after = _safe_next(str(form.get("next", "/")))
        if not self.gate.is_token(str(form.get("token", ""))):
            return self._login_page(request, after, error="wrong token")
        answer = RedirectResponse(after, status_code=303)
        answer.set_cookie(COOKIE, self.gate.session(), httponly=True, samesite="strict",
                          secure=request.url.scheme == "https", path="/",
                          max_age=SESSION_SECONDS)  # fmt: skip
        return answer

    def logout(self, request: Request) -> Response:
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(COOKIE, path="/")
        return answer

    def _login_page(self, request: Request, after: str, error: str, status: int = 401) -> Response:
        return self.templates.TemplateResponse(
            request, "login.html", {"next": after, "error": error}, status_code=status
        )

    def healthz(self, request: Request) -> Response:
        healthy, detail = self.dashboard.healthy()
        return JSONResponse({"healthy": healthy, "detail": detail},
                            status_code=200 if healthy else 503)  # fmt: skip

    # --- pages -------------------------------------------------------------------------

    def _page(self, request: Request, name: str, **context: Any) -> Response:
        fragment = request.query_params.get("fragment") == "1"
        template = f"{name}.html"
        return self.templates.TemplateResponse(
            request, template, {"fragment": fragment, "page": name, **context}
        )

    def overview(self, request: Request) -> Response:
        healthy, detail = self.dashboard.healthy()
        return self._page(request, "overview", status=self.dashboard.status(), states=CaseState,
                          healthy=healthy, health=detail)  # fmt: skip

    def cases(self, request: Request) -> Response:
        state = _state(request)
        search = request.query_params.get("q", "").strip()[:200]
        before = _int(request.query_params.get("before"))
        found = self.dashboard.cases(state=state, search=search, before=before)
        older = None
        if found.next_before is not None:
            older = URL("/cases").include_query_params(
                **{k: v for k, v in (("state", state and state.value), ("q", search)) if v},
                before=found.next_before,
            )
        return self._page(request, "cases", found=found, state=state, search=search,
                          states=CaseState, older=older)  # fmt: skip

    def case(self, request: Request) -> Response:
        story = self.dashboard.story(request.path_params["case_id"])
        if story is None:
            return self._page(request, "missing", case_id=request.path_params["case_id"])
        return self._page(request, "case", story=story, case=story.case)

    def slots(self, request: Request) -> Response:
        return self._page(request, "slots", slots=self.dashboard.slots())

    def alarms(self, request: Request) -> Response:
        every = request.query_params.get("all") == "1"
        return self._page(request, "alarms", alarms=self.dashboard.alarms(all=every), all=every)

    # --- the API, as the CLI's --json --------------------------------------------------

    def api_status(self, request: Request) -> Response:
        return JSONResponse(self.dashboard.status().as_json())

    def api_cases(self, request: Request) -> Response:
        found = self.dashboard.cases(
            state=_state(request), search=request.query_params.get("q", "").strip()[:200],
            before=_int(request.query_params.get("before")),
            limit=max(1, min(_int(request.query_params.get("limit")) or 50, 500)),
        )  # fmt: skip
        return JSONResponse(found.as_json())

    def api_case(self, request: Request) -> Response:
        case = self.dashboard.case(request.path_params["case_id"])
        if case is None:
            return JSONResponse({"error": "no such case"}, status_code=404)
        return JSONResponse(as_json(case))

    def api_history(self, request: Request) -> Response:
        story = self.dashboard.story(request.path_params["case_id"])
        if story is None:
            return JSONResponse({"error": "no such case"}, status_code=404)
        return JSONResponse(story.history)

    def api_slots(self, request: Request) -> Response:
        return JSONResponse(as_json(self.dashboard.slots()))

    def api_alarms(self, request: Request) -> Response:
        every = request.query_params.get("all") == "1"
        return JSONResponse(as_json(self.dashboard.alarms(all=every)))

    def metrics(self, request: Request) -> Response:
        return Response(exposition(self.dashboard), media_type=CONTENT_TYPE_LATEST)


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/metrics"


def _safe_next(value: str | None) -> str:
    """Where to go after logging in: only a path of this site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return quote(value, safe="/?=&%-_.~")


def _state(request: Request) -> CaseState | None:
    try:
        return CaseState(request.query_params.get("state", ""))
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    """A whole number SQLite can take, or None."""
    try:
        value = int(text) if text and len(text) <= 19 else None
    except ValueError:
        return None
    return value if value is None or abs(value) < 2**63 else None
