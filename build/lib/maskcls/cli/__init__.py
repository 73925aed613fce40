"""The ``maskcls`` command line, a thin layer over the library: ``options`` (every option, enums
for choices), one module per group of commands (``data``, ``train``, ``predict``, ``evaluate``,
``record``), ``render`` (what they print) and ``app`` (registration and error handling)."""

from maskcls.cli.app import app, main

__all__ = ["app", "main"]
