"""Where to track (``--track``, the recipe's ``track.uri``, ``MLFLOW_TRACKING_URI``) and whether
it answers; imports nothing heavy, so that a command without tracking starts as fast as before."""

from __future__ import annotations

import logging
import os

from maskcls.errors import UserError

log = logging.getLogger("maskcls")
CHECK_TIMEOUT_S = 5.0


class TrackingUnreachable(UserError):
    """The tracking server did not answer before anything started."""


def tracking_uri(option: str | None = None, recipe_uri: str | None = None) -> str | None:
    """The URI to log to: the option, else the recipe's ``track.uri``, else ``MLFLOW_TRACKING_URI``;
    None: no tracking."""
    return option or recipe_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def check_reachable(uri: str, timeout_s: float = CHECK_TIMEOUT_S) -> None:
    """An HTTP server must answer ``/health``; stores (``sqlite:///``, a folder) need no check."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error  # here: urllib.request alone costs a command's start-up 20 ms
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s) as answer:
            if answer.status == 200:
                return
            reason = f"HTTP {answer.status}"
    except urllib.error.HTTPError as error:
        reason = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        cause = getattr(error, "reason", error)
        reason = getattr(cause, "strerror", None) or str(cause)
    raise TrackingUnreachable(
        f"tracking server {uri} does not answer ({reason}); start it, fix --track, or add --track-optional "
        "to train without it"
    )
