"""What every HTML page of maskcls shares: the style sheet, and figures inlined as PNG data URIs
(a report is one file that can be mailed or archived alone)."""

from __future__ import annotations

import base64
import io

from maskcls.figures import pyplot

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table.headline td { padding: 0.15em 1em 0.15em 0; } img.chart { max-width: 100%; display: block; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
figure.mistake { margin: 0; width: 200px; font-size: 12px; border: 1px solid #ddd; padding: 6px; }
figure.mistake img { width: 100%; } figure.mistake small { word-break: break-all; }
.missing { height: 120px; background: #eee; text-align: center; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }
"""


def figure_data_uri(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    pyplot().close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
