"""The routes file after a rollout step, changed only where the rollout owns it.

A person reviews these changes (in git, in a GitOps tool), so the controller edits the
text the way a careful person would: the weight's value, the ``rollout.state`` entry
(one flow mapping on one line) and, when a rollout completes with ``promote``, the mode
and the keys a cutover route cannot have. Every other byte stays as it was: comments,
order, quoting, layout.

Invariants:
- Edits are located on the nodes PyYAML composes (exact character offsets) and applied
  back to front, so earlier offsets stay valid.
- The result is loaded again by the loader and compared with the file before it
  (``plan_change``): exactly the intended route changed, in exactly the intended fields,
  to exactly the intended values. Anything else raises ``EditError`` and nothing is
  written: a file the controller cannot edit safely is a file it leaves alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..routes import Mode, RoutesError, RouteTable, parse_routes
from ..routes.plan import plan_change
from ..routes.rollout import RolloutState, format_time

_BOM = "\ufeff"
_PROMOTE_REMOVES = ("weight", "sticky_header", "rollout")


class EditError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class RouteEdit:
    route: str
    weight: float | None = None  # the new weight; None: unchanged
    state: RolloutState | None = None  # the new rollout.state; None: unchanged
    promote: bool = False  # mode cutover; weight, sticky_header and rollout removed


def number_text(value: float | None) -> str:
    """A number as YAML 1.1 (PyYAML) reads it back as a number: ``25``, ``0.0012``,
    ``1.5e-05`` (PyYAML needs a dot and a signed exponent), ``null`` for none."""
    if value is None or not math.isfinite(value):
        return "null"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.6g}"
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def _key_text(name: str) -> str:
    # Plain when YAML reads it back as the same string; quoted when it would not
    # (``null``, ``on``, ``1.5`` are gate names YAML 1.1 reads as something else).
    return name if yaml.safe_load(name) == name else json.dumps(name)


def state_text(state: RolloutState) -> str:
    """``{phase: rolling, since: "...", gates: {"fallback_ratio": 0.0012}}``"""
    parts = [f"phase: {state.phase}"]
    if state.since is not None:
        parts.append(f'since: "{format_time(state.since)}"')
    gates = ", ".join(f"{_key_text(name)}: {number_text(v)}" for name, v in state.gates)
    parts.append(f"gates: {{{gates}}}")
    return "{" + ", ".join(parts) + "}"


def edit_routes(data: bytes, source: str, edit: RouteEdit) -> tuple[bytes, RouteTable]:
    """``data`` (a valid routes file) with ``edit`` applied, and the table it loads as."""
    before = parse_routes(data, source)
    text = data.decode("utf-8-sig")
    bom = _BOM if data.startswith(_BOM.encode()) else ""
    new_text = _Editor(text).apply(edit)
    new_data = (bom + new_text).encode()
    try:
        after = parse_routes(new_data, source)
    except RoutesError as exc:
        raise EditError(f"the edited file would not load ({exc}); left unchanged") from None
    _check(before, after, edit)
    return new_data, after


def _check(before: RouteTable, after: RouteTable, edit: RouteEdit) -> None:
    plan = plan_change(before, after)
    allowed = {"mode", *_PROMOTE_REMOVES} if edit.promote else {"weight", "rollout"}
    changes = plan.changes
    unexpected = plan.brokers_changed or plan.settings_changed or len(changes) != 1
    if not unexpected:
        change = changes[0]
        unexpected = (
            change.name != edit.route
            or change.kind != "changed"
            or not set(change.changed_fields) <= allowed
        )
    route = next((r for r in after.routes if r.name == edit.route), None)
    if unexpected or route is None:
        raise EditError(f"editing route {edit.route} would change more than it: {plan.as_dict()}")
    if edit.promote:
        ok = route.mode is Mode.CUTOVER and route.rollout is None and route.weight is None
    else:
        ok = edit.weight is None or route.weight == edit.weight
        if edit.state is not None:
            state = route.rollout.state if route.rollout is not None else None
            ok = ok and state is not None and state_text(state) == state_text(edit.state)
    if not ok:
        raise EditError(f"route {edit.route} did not read back as written; left unchanged")


class _Editor:
    """Splices on one text; offsets are PyYAML marks (characters of ``text``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.splices: list[tuple[int, int, str]] = []

    def apply(self, edit: RouteEdit) -> str:
        route = self.route_node(edit.route)
        fields = {key.value: (key, value) for key, value in route.value}
        if edit.promote:
            self.replace(fields["mode"][1], "cutover")
            for key in _PROMOTE_REMOVES:
                if key in fields:
                    self.remove(route, *fields[key])
        else:
            if edit.weight is not None:
                self.replace(fields["weight"][1], number_text(edit.weight))
            if edit.state is not None:
                rollout = fields["rollout"][1]
                assert isinstance(rollout, MappingNode)  # the loader read it
                self.set(rollout, "state", state_text(edit.state))
        text = self.text
        last = len(text) + 1
        for start, end, new in sorted(self.splices, reverse=True):
            if end > last:
                raise EditError("overlapping edits; left unchanged")
            text = text[:start] + new + text[end:]
            last = start
        return text

    def route_node(self, name: str) -> MappingNode:
        root = yaml.compose(self.text, Loader=yaml.SafeLoader)
        routes = _value(root, "routes") if isinstance(root, MappingNode) else None
        if isinstance(routes, SequenceNode):
            for item in routes.value:
                if isinstance(item, MappingNode) and _scalar(_value(item, "name")) == name:
                    return item
        raise EditError(f"route {name} not found in the file")

    # -- splices ------------------------------------------------------------------------

    def replace(self, node: Node, new: str) -> None:
        self.splices.append((node.start_mark.index, self.end(node), new))

    def set(self, mapping: MappingNode, key: str, flow: str) -> None:
        for key_node, value in mapping.value:
            if _scalar(key_node) == key:
                # From the key's end: the colon, the old value (any style) and the
                # comments inside it make way for one flow mapping.
                self.splices.append((key_node.end_mark.index, self.end(value), f": {flow}"))
                return
        last = self.end(mapping.value[-1][1])
        if mapping.flow_style:
            self.splices.append((last, last, f", {key}: {flow}"))
            return
        indent = " " * mapping.value[0][0].start_mark.column
        at, newline_first = self.line_end(last)
        lead = self.newline if newline_first else ""
        self.splices.append((at, at, f"{lead}{indent}{key}: {flow}{self.newline}"))

    def remove(self, mapping: MappingNode, key: Node, value: Node) -> None:
        text = self.text
        start, end = key.start_mark.index, self.end(value)
        if mapping.flow_style:
            before = start
            while before > 0 and text[before - 1] in " \t\r\n":
                before -= 1
            if before > 0 and text[before - 1] == ",":
                self.splices.append((before - 1, end, ""))
                return
            after = end
            while after < len(text) and text[after] in " \t\r\n":
                after += 1
            if after < len(text) and text[after] == ",":
                end = after + 1
            self.splices.append((start, end, ""))
            return
        line_start = text.rfind("\n", 0, start) + 1
        if text[line_start:start].strip():
            raise EditError(
                f"line {key.start_mark.line + 1}: cannot remove '{_scalar(key)}' "
                "because it shares its line with something else; put it on a line of its own"
            )
        at, _ = self.line_end(end)
        self.splices.append((line_start, at, ""))

    # -- positions ----------------------------------------------------------------------

    def end(self, node: Node) -> int:
        """Where ``node``'s content ends: its last character, not the lines after it
        (a block collection's end mark is where the next token begins)."""
        if isinstance(node, MappingNode) and not node.flow_style and node.value:
            return self.end(node.value[-1][1])
        if isinstance(node, SequenceNode) and not node.flow_style and node.value:
            return self.end(node.value[-1])
        end = node.end_mark.index
        while end > node.start_mark.index and self.text[end - 1] in " \t\r\n":
            end -= 1  # block scalars (| >) end after their trailing line breaks
        return end

    def line_end(self, index: int) -> tuple[int, bool]:
        """The start of the line after ``index`` (a trailing comment stays on its line);
        True when the text ends there without a line break."""
        newline = self.text.find("\n", index)
        if newline < 0:
            return len(self.text), True
        return newline + 1, False


def _value(mapping: Node, key: str) -> Node | None:
    if not isinstance(mapping, MappingNode):
        return None
    for key_node, value in mapping.value:
        if _scalar(key_node) == key:
            found: Node = value
            return found
    return None


def _scalar(node: Node | None) -> str | None:
    return node.value if isinstance(node, ScalarNode) else None
