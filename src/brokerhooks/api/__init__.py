"""The JSON API at ``/api/v1``: a broker's events, rules and runs.

    app.py      builds the FastAPI app; one log line per request
    auth.py     the bearer token and the broker it speaks for
    errors.py   every error answer, and its OpenAPI description
    params.py   shared parameters and their limits
    schemas.py  the response bodies
    events.py, rules.py, runs.py   the routes

docs/api.md describes it for people; ``/api/v1/openapi.json`` for programs.
"""

from brokerhooks.api.app import create_api, mount_api

__all__ = ["create_api", "mount_api"]
