"""Structured logging: one configuration for the whole process.

JSON lines when standard error is not a terminal (or when asked), coloured
console lines otherwise. Every line passes through the redaction processor,
so a secret cannot reach a log even by accident.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from brokerhooks.security.redaction import redact_event_dict


def configure_logging(
    log_format: Literal["auto", "json", "console"] = "auto", level: str = "INFO"
) -> None:
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Redaction runs once per line, last before rendering, so that it also
    # sees the text of a formatted exception.
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redact_event_dict,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelName(level)
        ),
        logger_factory=structlog.WriteLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )

    # Libraries that log through the standard library go through the same
    # redaction and rendering.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_event_dict,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("uvicorn.error").setLevel(level)
    # One line per delivery comes from brokerhooks itself.
    logging.getLogger("uvicorn.access").disabled = True
