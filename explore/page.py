"""The report's HTML page: one self-contained file that opens offline.

Vega, Vega-Lite and Vega-Embed come from vl-convert's JavaScript bundle, inlined once for all
charts (Altair's ``inline=True`` would inline it once per chart); each chart's Vega-Lite spec is
embedded as JSON. The front table sorts by clicking a header, with a few lines of inline JS.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import polars as pl

from onn.energy import format_energy


@dataclass(frozen=True)
class Section:
    key: str  # element id and PNG name
    heading: str
    spec: dict[str, Any] | None  # Vega-Lite spec, or None when there is nothing to draw yet
    notes: tuple[str, ...] = ()


@lru_cache(maxsize=1)
def vega_bundle() -> str:
    """Vega + Vega-Lite + Vega-Embed as one script (~0.9 MB), matching Altair's Vega-Lite version."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    script = vl_convert.javascript_bundle(vl_version=vl_version_for_vl_convert())
    return script.replace("</script", "<\\/script")  # cannot end the <script> element early


def _json(value: Any) -> str:
    return json.dumps(value, allow_nan=False).replace("</", "<\\/")


def table(frame: pl.DataFrame, columns: Sequence[str], titles: dict[str, str] | None = None) -> str:
    """A plain HTML table; numeric cells carry ``data-v`` so the sort is numeric."""
    titles = titles or {}
    head = "".join(f'<th title="{html.escape(c)}">{html.escape(titles.get(c, c))}</th>' for c in columns)
    body = []
    for row in frame.select(columns).iter_rows():
        cells = []
        for column, value in zip(columns, row):
            if isinstance(value, float) and column.endswith("_pj"):  # energies in the unit their size calls for
                cells.append(f'<td data-v="{value!r}">{format_energy(value)}</td>')
            elif isinstance(value, float):
                cells.append(f'<td data-v="{value!r}">{value:.4g}</td>')
            elif isinstance(value, int):  # bool too
                cells.append(f'<td data-v="{int(value)}">{html.escape(str(value))}</td>')
            else:
                cells.append(f"<td>{'' if value is None else html.escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


SORT_JS = """
document.querySelectorAll('table.sortable th').forEach((th, col) => th.addEventListener('click', () => {
  const body = th.closest('table').tBodies[0], up = th.dataset.dir !== 'up';
  th.closest('tr').querySelectorAll('th').forEach(h => delete h.dataset.dir);
  th.dataset.dir = up ? 'up' : 'down';
  const key = r => { const c = r.cells[col]; return c.dataset.v !== undefined ? +c.dataset.v : c.textContent; };
  const rows = [...body.rows].sort((a, b) => { const x = key(a), y = key(b);
    return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); });
  rows.forEach(r => body.appendChild(r));
}));
"""

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.note { color: #555; margin: .3em 0; } code { background: #f4f4f4; padding: 0 .2em; }
table.sortable { border-collapse: collapse; font-size: 12px; display: block; overflow-x: auto; }
table.sortable th { cursor: pointer; background: #f4f4f4; position: sticky; top: 0; white-space: nowrap; }
table.sortable th[data-dir=up]::after { content: " ▲"; } table.sortable th[data-dir=down]::after { content: " ▼"; }
table.sortable td, table.sortable th { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
figure { display: inline-block; margin: .5em 1em .5em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 12px; }
"""


def render(title: str, intro: Sequence[str], sections: Sequence[Section], table_html: str,
           table_notes: Sequence[str], figures: Sequence[tuple[str, bytes]] = (),
           figure_notes: Sequence[str] = ()) -> str:
    """The whole page as one string; ``figures`` (caption, PNG bytes) are inlined after the table."""
    parts = []
    embeds = {}
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        parts += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
        if section.spec is not None:
            parts.append(f'<div class="chart" id="chart-{section.key}"></div>')
            embeds[f"#chart-{section.key}"] = section.spec
    parts.append("<h2>Front designs</h2>")
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in table_notes]
    parts.append(table_html)
    if figures:
        parts.append("<h2>Front layouts</h2>")
        parts += [f'<p class="note">{html.escape(note)}</p>' for note in figure_notes]
        parts += [f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
                  f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(caption)}</figcaption></figure>'
                  for caption, png in figures]
    intro_html = "".join(f"<p>{html.escape(line)}</p>" for line in intro)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
<script type="text/javascript">
{vega_bundle()}
</script>
</head>
<body>
<h1>{html.escape(title)}</h1>
{intro_html}
{"".join(parts)}
<script type="text/javascript">
const specs = {_json(embeds)};
for (const [target, spec] of Object.entries(specs)) {{
  vegaEmbed(target, spec, {{actions: {{export: true, source: true, compiled: false, editor: false}}}})
    .catch(error => {{ console.error(error); document.querySelector(target).textContent = 'chart error: ' + error; }});
}}
{SORT_JS}
</script>
</body>
</html>
"""
