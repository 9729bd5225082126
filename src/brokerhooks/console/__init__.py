"""The broker console: server-rendered pages for brokers and their staff.

People see what happened to every event, replay what failed, write and
back-test rules, and manage their SalesTrekker and Microsoft 365
connections. ``routes()`` gives the routes to add to the app;
docs/console.md describes the pages, the roles and how sessions are kept.
"""

from brokerhooks.console.routes import routes

__all__ = ["routes"]
