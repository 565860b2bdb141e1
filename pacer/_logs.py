"""Logging for the command line: plain lines or JSON lines, at a level, to stderr.

``configure(level, format)`` sets up the ``pacer`` and ``uvicorn`` loggers and returns
the same configuration for uvicorn's ``log_config`` (its worker processes apply it
too). A JSON line holds ``time``, ``level``, ``logger``, ``message`` and, for a stream's
end, its figures (``outcome``, ``chars``, ``first_output_s``, ``lag_p99_s``, ...).
"""

from __future__ import annotations

import json
import logging
import logging.config
import time
from typing import Any

__all__ = ["FORMATS", "LEVELS", "JsonFormatter", "configure"]

LEVELS = ("critical", "error", "warning", "info", "debug")
FORMATS = ("plain", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a record's ``stream`` extra (a dict) is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        figures = getattr(record, "stream", None)
        if isinstance(figures, dict):
            out |= figures
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str, format: str) -> dict[str, Any]:
    """Log ``pacer`` and ``uvicorn`` to stderr at ``level``, as ``format`` lines."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if format not in FORMATS:
        raise ValueError(f"log format must be plain or json, got {format!r}")
    if format == "json":
        formatter: dict[str, Any] = {"()": JsonFormatter}
    else:
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    upper = level.upper()
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"stderr": handler},
        "loggers": {
            "pacer": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper, "propagate": True},
            "uvicorn.access": {"handlers": ["stderr"], "level": upper, "propagate": False},
        },
    }
    logging.config.dictConfig(config)
    return config
