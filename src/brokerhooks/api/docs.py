"""``/api/v1/docs``: the API described for people, from its OpenAPI description.

FastAPI's own pages load Swagger UI or ReDoc from a CDN; this one is plain
HTML made here, so it works where the service has no way out. Every text
in it is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #1d2430; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #d0d6de; }
h3 { font-family: ui-monospace, monospace; font-size: 1rem; margin-bottom: .25rem; }
.method { display: inline-block; min-width: 4rem; font-weight: bold; }
table { border-collapse: collapse; margin: .5rem 0; }
td, th { border: 1px solid #d0d6de; padding: .2rem .5rem; text-align: left;
         vertical-align: top; }
code { font-family: ui-monospace, monospace; }
"""


def render(description: dict[str, Any]) -> str:
    """The page for an OpenAPI ``description``."""
    info = description.get("info", {})
    by_tag: dict[str, list[str]] = {}
    for path, operations in description.get("paths", {}).items():
        for method, operation in operations.items():
            tag = (operation.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append(_operation(method, path, operation))
    sections = [
        f"<h2>{escape(tag)}</h2>\n" + "\n".join(operations)
        for tag, operations in by_tag.items()
    ]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(info.get('title', 'API'))} API</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{escape(info.get('title', 'API'))} API "
            f"{escape(str(info.get('version', '')))}</h1>",
            _paragraphs(info.get("description", "")),
            '<p>Machine-readable: <a href="openapi.json">openapi.json</a>.</p>',
            *sections,
            "</body></html>",
        ]
    )


def _operation(method: str, path: str, operation: dict[str, Any]) -> str:
    parts = [
        f'<h3><span class="method">{escape(method.upper())}</span>'
        f"/api/v1{escape(path)}</h3>",
        f"<p><strong>{escape(operation.get('summary', ''))}</strong></p>",
        _paragraphs(operation.get("description", "")),
    ]
    parameters = operation.get("parameters", [])
    if parameters:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{'required' if p.get('required') else ''}</td>"
            f"<td>{escape(p.get('description', ''))}</td></tr>"
            for p in parameters
        )
        parts.append(
            f"<table><tr><th>parameter</th><th>in</th><th></th>"
            f"<th></th></tr>{rows}</table>"
        )
    body = operation.get("requestBody")
    if body is not None:
        types = ", ".join(f"<code>{escape(kind)}</code>" for kind in body["content"])
        parts.append(f"<p>Body: {escape(body.get('description', ''))} ({types})</p>")
    answers = ", ".join(
        f"<code>{escape(str(status))}</code> {escape(response.get('description', ''))}"
        for status, response in operation.get("responses", {}).items()
    )
    parts.append(f"<p>Answers: {answers}</p>")
    return "\n".join(parts)


def _paragraphs(text: str) -> str:
    return "".join(
        f"<p>{escape(paragraph)}</p>" for paragraph in text.split("\n\n") if paragraph
    )
