"""The callback every long job takes: ``progress(done, total)``, called as work gets done.

Library code reports progress only through it; the CLI passes a bar with ETA
(:func:`maskcls.progress.progress_bar`), tests and scripts pass nothing or their own.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int], None]
