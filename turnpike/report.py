"""A study as one self-contained HTML page: the table, every figure embedded, the settings, each solve's status
and the warnings. Readable without a server or network (figures are ``data:`` URIs, the style inline, no
script)."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

__all__ = ["html_report", "study_report", "sweep_report"]


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return html.escape(str(value))


def html_report(title: str, *, settings: dict, columns: list[str], rows: list[dict], figures: list[Path],
                warnings: list[str], summary: str = "") -> str:
    """The page: ``title``, a ``summary`` line, ``warnings`` (highlighted), the table of ``rows`` (only
    ``columns``; a row that did not converge is marked), each PNG of ``figures`` embedded, then ``settings``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        f"<tr class=\"{'' if row.get('success', True) else 'failed'}\">"
        + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    images = "".join(
        f"<figure><img alt=\"{html.escape(p.name)}\" src=\"data:image/png;base64,"
        f"{base64.b64encode(p.read_bytes()).decode()}\"><figcaption>{html.escape(str(p.name))}</figcaption></figure>"
        for p in figures
    )
    notes = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
th, td {{ border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }}
th {{ background: #eee; }}
tr.failed td {{ background: #fde2e2; }}
.warnings {{ background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 1em; }}
figure {{ margin: 1.5em 0; }} img {{ max-width: 100%; border: 1px solid #ddd; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary)}</p>
{f'<div class="warnings"><strong>Warnings</strong><ul>{notes}</ul></div>' if warnings else ''}
<h2>Table</h2>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>Figures</h2>
{images or '<p>No figures.</p>'}
<h2>Settings</h2>
<pre>{html.escape(json.dumps(settings, indent=2, default=str), quote=False)}</pre>
</body></html>
"""


_STUDY_COLUMNS = ["T", "steps", "success", "status", "cost", "cost_per_time", "cost_excess", "rate", "rate_model",
                  "rate_r2", "predicted_rate", "tube_entry", "tube_exit", "iterations", "total_seconds", "warnings"]


def study_report(study, figures: list[Path], path) -> Path:
    """``path`` (``report.html``) for a :class:`~turnpike.HorizonStudy` and its figure files."""
    static = study.static
    summary = (f"{len(study.solutions)} horizons; static cost J̄ = {static.cost:.6g} "
               f"({'converged' if static.success else 'NOT converged: ' + static.status})")
    warnings = [f"T = {s.T:g}: {w}" for s in study.solutions for w in s.warnings] + list(study.warnings)
    page = html_report(f"{study.problem}: horizon comparison", settings=study.settings, columns=_STUDY_COLUMNS,
                       rows=study.rows(), figures=figures, warnings=warnings, summary=summary)
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


def sweep_report(result, out: Path, path) -> Path:
    """``path`` (``report.html``) for a :class:`~turnpike.SweepResult` written in ``out``."""
    columns = [c for c in result.columns if c not in ("static_cost", "rate_points", "predicted_reason",
                                                      "tube_epsilon", "rate_constant", "last_cost")]
    figures = [Path(f) for f in result.files if str(f).endswith(".png")]
    warnings = [f"point {r['point']} T = {r['T']:g} seed {r['seed']}: {r['warnings']}" for r in result.rows
                if r.get("warnings")]
    summary = (f"{len(result.rows)} solves over {len(result.points)} parameter points; "
               f"{sum(bool(r['success']) for r in result.rows)} converged")
    settings = {"points": list(result.points)}
    page = html_report(f"{result.factory}: sweep", settings=settings, columns=columns, rows=list(result.rows),
                       figures=figures, warnings=warnings, summary=summary)
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
