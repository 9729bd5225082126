"""The console's routes, mounted at ``/console``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from brokerhooks.console import admin, connections, events, overview, rules, signin
from brokerhooks.console.web import PREFIX, STATIC, Console, Handler

GET = ["GET"]
POST = ["POST"]


def routes() -> list[BaseRoute]:
    """The console under ``/console`` and a redirect to it from ``/``.

    Each call makes a console of its own (templates, sign-in throttle).
    """
    console = Console()

    def page(path: str, handler: Handler, methods: list[str] = GET) -> Route:
        return Route(path, console.handle(handler), methods=methods)

    def admin_page(path: str, handler: Handler, methods: list[str] = GET) -> Route:
        return Route(path, console.handle(handler, admin=True), methods=methods)

    return [
        Route("/", _to_console, methods=GET),
        Mount(
            PREFIX,
            routes=[
                Mount("/static", StaticFiles(directory=STATIC), name="static"),
                Route(
                    "/sign-in", console.handle_public(signin.sign_in_form), methods=GET
                ),
                Route("/sign-in", console.handle_public(signin.sign_in), methods=POST),
                page("/sign-out", signin.sign_out, POST),
                page("/", overview.overview),
                page("/events", events.events),
                page("/events/{event_id}", events.event),
                page("/events/{event_id}/replay", events.replay_event, POST),
                page("/attention", events.attention),
                page("/attention/replay", events.replay_many, POST),
                page("/rules", rules.rules_list),
                page("/rules/{rule_id}", rules.edit_rule),
                page("/rules/{rule_id}", rules.save_rule, POST),
                page("/rules/{rule_id}/enable", rules.set_enabled, POST),
                page("/rules/{rule_id}/disable", rules.set_enabled, POST),
                page("/rules/{rule_id}/delete", rules.delete_form),
                page("/rules/{rule_id}/delete", rules.delete, POST),
                page("/new-rule", rules.new_rule),
                page("/new-rule", rules.save_new_rule, POST),
                page("/recipes", rules.recipes),
                page("/recipes/{recipe_id}", rules.recipe_form),
                page("/recipes/{recipe_id}", rules.add_recipe, POST),
                page("/connections", connections.connections_page),
                page("/connections/salestrekker/key", connections.rotate_key, POST),
                page(
                    "/connections/salestrekker/test", connections.send_test_event, POST
                ),
                page("/connections/salestrekker/check", connections.check_drift, POST),
                page("/connections/m365/new", connections.new_m365),
                page("/connections/m365/new", connections.add_m365, POST),
                page(
                    "/connections/m365/{connection_id}/connect",
                    connections.connect_m365,
                    POST,
                ),
                page(
                    "/connections/m365/{connection_id}/disconnect",
                    connections.disconnect_form,
                ),
                page(
                    "/connections/m365/{connection_id}/disconnect",
                    connections.disconnect,
                    POST,
                ),
                admin_page("/broker", admin.pick_broker, POST),
                admin_page("/admin/brokers", admin.brokers_page),
                admin_page("/admin/brokers", admin.add_broker, POST),
                admin_page("/admin/users", admin.users_page),
                admin_page("/admin/users", admin.add_user, POST),
                admin_page("/admin/users/{user_id}/remove", admin.remove_form),
                admin_page("/admin/users/{user_id}/remove", admin.remove_user, POST),
            ],
        ),
    ]


async def _to_console(_request: Request) -> Response:
    return RedirectResponse(PREFIX + "/", status_code=307)
