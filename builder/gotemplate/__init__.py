"""docker's `--format` language: Go's text/template over JSON-like data, plus docker's functions.

Owns: parsing a template (`parse(text) -> Template`), executing it over Python values (dicts,
lists, str, int, float, bool, None), Go's `%v` printing of those values, docker's template
functions (json, join, split, lower, upper, title, pad, truncate, println) next to Go's built-in
ones (printf, print, len, index, slice, eq/ne/lt/le/gt/ge, and/or/not), the `table` prefix with a
tab-aligned writer like docker's (Go tabwriter: min width 10, padding 3), and `--format json`.
Semantics follow Go's text/template: `{{.A.B}}`, `$`, `$x := …`, pipes `|`, `{{if}}`/`{{else if}}`/
`{{else}}`, `{{range}}` (with `$i, $e :=`, `{{break}}`, `{{continue}}`), `{{with}}`, `{{- -}}` trim
markers, comments. A missing map key prints `<no value>` (docker 20.10's behaviour; docker 23+
inspect errors instead). Must not: touch files, print or exit (errors are TemplateError).
Pure standard library.
"""
from __future__ import annotations

from builder.gotemplate.execute import Template, parse, render
from builder.gotemplate.table import format_rows, tabwrite
from builder.gotemplate.values import MISSING, TemplateError, TemplateParseError, gostr

__all__ = ["TemplateError", "TemplateParseError", "Template", "parse", "render", "tabwrite",
           "format_rows", "gostr", "MISSING"]
