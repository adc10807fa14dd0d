"""HTML tables of the report: escaping, number formatting, summary tables with the best value of a
column marked, and key/value tables. Every piece of text that comes from the data is HTML-escaped."""

from __future__ import annotations

import html
import json
import math
from typing import Any
from collections.abc import Callable, Sequence


def e(value: Any) -> str:
    """Text from the data, escaped for HTML element content and attribute values."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 3) -> str:
    """A table cell: '–' for missing/NaN, p-values and small numbers in scientific notation."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(value):
        return "–"
    if value != 0 and abs(value) < 10 ** -digits:
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


class Column:
    """A summary-table column: a header, a key in the summary row, a formatter, and which way is
    better (None: no best value is marked)."""

    def __init__(self, header: str, key: str, fmt: Callable[[Any], str], better: str | None = None,
                 title: str = "", text: bool | None = None):
        self.header, self.key, self.fmt, self.better, self.title = header, key, fmt, better, title
        self.text = fmt is str if text is None else text  # text columns align left


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _best_rows(rows: Sequence[dict], column: Column, groups: Sequence[Any]) -> set[int]:
    """Indices of the rows holding the best finite value of ``column`` within their group."""
    if column.better is None:
        return set()
    best: set[int] = set()
    for group in dict.fromkeys(groups):
        members = [i for i, g in enumerate(groups) if g == group]
        values = {i: _as_float(rows[i].get(column.key)) for i in members}
        finite = {i: v for i, v in values.items() if math.isfinite(v)}
        if len(finite) < 2:
            continue  # one value is not a "best"
        target = min(finite.values()) if column.better == "low" else max(finite.values())
        best |= {i for i, v in finite.items() if v == target}
    return best


def table_html(rows: Sequence[dict], columns: Sequence[Column], groups: Sequence[Any] | None = None,
               caption: str = "", star: Callable[[dict, Column], bool] | None = None) -> str:
    """An HTML table of summary rows, the best value of each directed column marked with ★ (within
    each group, e.g. each k); ``star(row, column)``: whether a best value earns its star (e.g. only
    where a test says it differs); without it every best value does."""
    groups = list(groups) if groups is not None else [0] * len(rows)
    marks = {c.key: {i for i in _best_rows(rows, c, groups) if star is None or star(rows[i], c)} for c in columns}
    arrows = {"low": " ↓", "high": " ↑", None: ""}
    text_class = ' class="text"'
    head = "".join(f'<th scope="col"{text_class if c.text else ""} title="{e(c.title)}">'
                   f'{e(c.header)}{arrows[c.better]}</th>' for c in columns)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for c in columns:
            text = e(c.fmt(row.get(c.key)))
            classes = ["text"] if c.text else []
            if i in marks[c.key]:
                classes.append("best")
                text += "&nbsp;★"
            attribute = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attribute}>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    return (f'<div class="scroll"><table class="summary">{cap}<thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def records(frame) -> list[dict]:
    return [] if frame is None or frame.empty else frame.to_dict(orient="records")


def key_values(data: dict, skip: Sequence[str] = ()) -> str:
    rows = []
    for key, value in data.items():
        if key in skip:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if len(text) > 800:  # e.g. a dataset's full list of file ids: meta.json has it all
            text = f"{text[:800]} … ({len(text)} characters; see meta.json)"
        rows.append(f"<tr><th scope=\"row\">{e(key)}</th><td><code>{e(text)}</code></td></tr>")
    return f"<table class=\"meta\"><tbody>{''.join(rows)}</tbody></table>"
