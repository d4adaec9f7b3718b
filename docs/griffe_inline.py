"""A griffe extension for the API reference (mkdocs.yml loads it): reads voxaudit's docstrings.

The code's parameter sections follow numpydoc's layout but most put the description on the
name's line (``model : the audited model: any ...``), where numpydoc expects a type. Read as
numpydoc, the description would land in the "Type" column. This rewrites such a line to a
name with no type (the type then comes from the signature) and its description below, and
leaves real types (``name : str, default="x"``) alone. It also turns Sphinx roles
(``:class:`~a.B```), which Markdown does not know, into code spans. The source files are not
changed: only the text griffe parses.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension, Object

SECTIONS = {"Parameters", "Other Parameters", "Attributes", "Returns", "Yields", "Raises"}
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
_ITEM = re.compile(r"^(?P<names>[A-Za-z_*][\w*]*(?:\s*,\s*[A-Za-z_*][\w*]*)*)\s*:\s*(?P<rest>.*)$")
# Words a numpydoc type is written with; any other lowercase word marks a description.
_TYPE_WORDS = {
    "of", "or", "to", "and", "optional", "default", "str", "int", "float", "bool", "bytes",
    "list", "dict", "tuple", "set", "mapping", "sequence", "iterable", "callable", "ndarray",
    "estimator", "none", "path", "any", "array", "array-like", "object", "type",
}  # fmt: skip


def _is_type(text: str) -> bool:
    """Whether ``text`` (what follows ``name :``) reads as a numpydoc type."""
    head = text.split(", default", 1)[0].strip()
    if not head or head.endswith((".", ":", ";")) or "``" in head or "(" in head:
        return False
    for word in re.findall(r"[A-Za-z][\w.-]*", head):
        if word[0].isupper() or "." in word:
            continue  # a class name, or a dotted path
        if word.lower() not in _TYPE_WORDS:
            return False
    return True


def rewrite(text: str) -> str:
    """``text`` with inline parameter descriptions moved below their names, roles as code."""
    text = _ROLE.sub(
        lambda m: f"``{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}``", text
    )
    lines = text.splitlines()
    out: list[str] = []
    section: str | None = None
    indent = 0
    for k, line in enumerate(lines):
        stripped = line.strip()
        below = lines[k + 1].strip() if k + 1 < len(lines) else ""
        if stripped in SECTIONS and below and set(below) == {"-"}:
            section, indent = stripped, len(line) - len(line.lstrip())
            out.append(line)
            continue
        if section is None or not stripped or set(stripped) == {"-"}:
            out.append(line)
            continue
        own = len(line) - len(line.lstrip())
        if own < indent:
            section = None
        elif own == indent and section in ("Parameters", "Other Parameters", "Attributes"):
            match = _ITEM.match(stripped)
            if match and not _is_type(match["rest"]):
                out.append(" " * own + match["names"])
                if match["rest"]:
                    out.append(" " * (own + 4) + match["rest"])
                continue
        out.append(line)
    return "\n".join(out)


class InlineParameters(Extension):
    """Rewrites every docstring as :func:`rewrite` says, once the tree is loaded."""

    def on_object(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)
