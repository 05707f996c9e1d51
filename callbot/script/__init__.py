"""Dialogue templates: the YAML format staff write, its validation (with line numbers) and the
Jinja2 sandbox that renders prompts with a contact's columns.

One module per concept: ``loader`` (YAML with lines, the error model), ``model`` (fields,
steps, handlers, ``Script``), ``sandbox`` (Jinja2 limits), ``validation`` (``parse_script``),
``library`` (built-ins, ``load_script``, ``tabulations``). Import from ``callbot.script``.

A template (see docs/scripts.md for the guide)::

    name: mask_reservation            # ASCII id
    title: 口罩预约登记
    requires: [姓名]                   # contact columns the prompts use
    fields:                           # result fields, tabulated in reports
      need_masks: bool
      masks: int 0-5
    start: greet
    steps:
      greet: {say: "{{ 姓名 }}您好……", next: ask_need}
      ask_need:
        ask: "请问您家需要口罩吗？需要请按1，不需要请按2。"
        keys: {1: yes, 2: no}
        answers:
          yes: {set: {need_masks: true}, next: ask_count}
          no:  {set: {need_masks: false, masks: 0}, next: bye}
      bye: {say: "感谢您的配合，再见。", end: completed}
"""

from __future__ import annotations

from callbot.script.library import (
    MASK_FIELDS,
    WELFARE_FIELD,
    builtin_names,
    builtin_text,
    field_labels,
    load_script,
    tabulations,
)
from callbot.script.loader import (
    TemplateIssue,
    safe_yaml,
)
from callbot.script.model import (
    ALIASES,
    ANSWER_INTENTS,
    BUILTIN_VARIABLES,
    DEFAULT_RETRIES,
    DEFAULT_SAY,
    END_REASONS,
    FIELD_TYPES,
    HANDLER_KINDS,
    FieldSpec,
    Handler,
    Script,
    Step,
)
from callbot.script.sandbox import (
    ALLOWED_FILTERS,
)
from callbot.script.validation import (
    parse_script,
)

__all__ = [
    "safe_yaml",
    "TemplateIssue",
    "ALIASES",
    "ANSWER_INTENTS",
    "BUILTIN_VARIABLES",
    "DEFAULT_RETRIES",
    "DEFAULT_SAY",
    "END_REASONS",
    "FIELD_TYPES",
    "FieldSpec",
    "Handler",
    "HANDLER_KINDS",
    "Script",
    "Step",
    "ALLOWED_FILTERS",
    "parse_script",
    "builtin_names",
    "builtin_text",
    "field_labels",
    "load_script",
    "MASK_FIELDS",
    "tabulations",
    "WELFARE_FIELD",
]
