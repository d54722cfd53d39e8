"""The edited routes file: only the rollout's own bytes change, whatever the layout, and
an edit that would change anything else is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from rollout_fixtures import ROUTES

from strangler.rollout.edit import (
    EditError,
    RouteEdit,
    _Editor,
    edit_routes,
    number_text,
    state_text,
)
from strangler.routes import Mode
from strangler.routes.rollout import Phase, RolloutState

WHEN = datetime(2025, 5, 1, 10, 0, 0, 123_000, tzinfo=UTC)
STATE = RolloutState(Phase.ROLLING, WHEN, (("fallback_ratio", 0.0125),))
STATE_LINE = '{phase: rolling, since: "2025-05-01T10:00:00.123Z", gates: {fallback_ratio: 0.0125}}'


def edit(text: str, change: RouteEdit) -> str:
    data, _ = edit_routes(text.encode(), "routes.yaml", change)
    return data.decode()


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]


def test_a_step_changes_the_weight_and_adds_the_state_line_and_nothing_else() -> None:
    after = edit(ROUTES, RouteEdit("pay", weight=1, state=STATE))
    assert after == ROUTES.replace("weight: 0 ", "weight: 1 ") + f"      state: {STATE_LINE}\n"


def test_the_next_step_replaces_the_state_in_place() -> None:
    first = edit(ROUTES, RouteEdit("pay", weight=1, state=STATE))
    later = RolloutState(Phase.ROLLING, WHEN, (("fallback_ratio", None),))
    second = edit(first, RouteEdit("pay", weight=50, state=later))
    assert changed_lines(first, second) == [
        (
            "    weight: 1    # the controller moves this",
            "    weight: 50    # the controller moves this",
        ),
        (f"      state: {STATE_LINE}", f"      state: {state_text(later)}"),
    ]
    assert "gates: {fallback_ratio: null}" in second


def test_a_hand_written_block_state_is_replaced_by_one_line() -> None:
    text = ROUTES + "      state:\n        phase: rolling\n        gates: {}\n"
    after = edit(text, RouteEdit("pay", weight=1, state=STATE))
    assert after.endswith(f"min_messages: 100}}\n      state: {STATE_LINE}\n")


FLOW = (
    'brokers: {legacy: {url: "stomp://h:1"}, amazonmq: {url: "stomp+ssl://h:2"}}\n'
    "routes:\n"
    "  - {name: pay, match: {exact: /q}, mode: split, weight: 0, sticky_header: K, "
    "on_failure: legacy, rollout: {steps: [50, 100], every: 1m, promote: true, "
    "gates: [{metric: reject_ratio, max: 0, window: 1m, min_messages: 1}]}}\n"
    "  - {name: other, match: {exact: /o}, mode: mirror}\n"
)


def test_flow_style_routes_are_edited_in_flow_style() -> None:
    after = edit(FLOW, RouteEdit("pay", weight=50, state=STATE))
    assert f"min_messages: 1}}], state: {STATE_LINE}}}}}\n" in after
    assert "weight: 50, sticky_header: K" in after
    promoted = edit(after, RouteEdit("pay", promote=True))
    assert "  - {name: pay, match: {exact: /q}, mode: cutover, on_failure: legacy}\n" in promoted


def test_promotion_makes_a_cutover_and_removes_what_a_cutover_cannot_have() -> None:
    data, table = edit_routes(ROUTES.encode(), "routes.yaml", RouteEdit("pay", promote=True))
    route = next(r for r in table.routes if r.name == "pay")
    assert route.mode is Mode.CUTOVER and route.rollout is None and route.sticky_header is None
    text = data.decode()
    assert "rollout:" not in text and "sticky_header" not in text and "weight" not in text
    assert "  # payments: stepped up by strangler rollout\n" in text
    assert text.endswith("    mode: cutover\n    on_failure: legacy\n")


def test_crlf_files_keep_their_line_breaks_and_a_bom_stays() -> None:
    text = "\ufeff" + ROUTES.replace("\n", "\r\n")
    after = edit(text, RouteEdit("pay", weight=1, state=STATE))
    assert after.startswith("\ufeff#") and "\n" not in after.replace("\r\n", "")
    assert after.endswith(f"      state: {STATE_LINE}\r\n")


def test_a_file_without_a_final_line_break_gets_the_state_on_a_line_of_its_own() -> None:
    after = edit(ROUTES.rstrip("\n"), RouteEdit("pay", weight=1, state=STATE))
    assert after.endswith(f"min_messages: 100}}\n      state: {STATE_LINE}\n")


def test_a_key_sharing_its_line_is_refused_rather_than_guessed() -> None:
    text = ROUTES.replace("    weight: 0    # the controller moves this\n", "").replace(
        "  - name: pay\n", "  - weight: 0\n    name: pay\n"
    )
    with pytest.raises(EditError, match="shares its line"):
        edit(text, RouteEdit("pay", promote=True))


def test_an_anchor_shared_with_another_route_is_refused() -> None:
    # Both routes' weights are one YAML node: changing it would move the other route too.
    text = ROUTES.replace("weight: 0 ", "weight: &w 0 ") + (
        "  - name: twin\n    match: {exact: /twin}\n    mode: split\n    weight: *w\n"
        "    on_failure: legacy\n"
    )
    with pytest.raises(EditError, match="left unchanged"):
        edit(text, RouteEdit("pay", weight=50, state=STATE))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (25.0, "25"),
        (2.5, "2.5"),
        (0.0125, "0.0125"),
        (1.5e-05, "1.5e-05"),
        (1e-05, "1.0e-05"),
        (1e20, "1.0e+20"),
        (None, "null"),
        (float("nan"), "null"),
        (1 / 3, "0.333333"),
    ],
)
def test_numbers_are_written_so_yaml_reads_them_back_as_numbers(
    value: float | None, text: str
) -> None:
    assert number_text(value) == text
    read = yaml.safe_load(text)
    assert read is None or isinstance(read, int | float)


def test_gate_names_yaml_would_misread_are_quoted() -> None:
    state = RolloutState(Phase.ROLLING, None, (("null", 1.0), ("on", 2.0), ("p99", 3.0)))
    assert state_text(state) == '{phase: rolling, gates: {"null": 1, "on": 2, p99: 3}}'


@pytest.mark.parametrize(
    ("slip", "reason"),
    [
        (("mode: mirror", "mode: legacy"), "would change more than it"),
        (("weight: 1 ", "weight: 2 "), "did not read back as written"),
    ],
)
def test_an_edit_that_slipped_is_caught_by_reading_the_file_back(
    monkeypatch: pytest.MonkeyPatch, slip: tuple[str, str], reason: str
) -> None:
    # The safety net under the splices: whatever they did, the file is loaded again and
    # compared with the intended change before anything is written.
    apply = _Editor.apply

    def slipping(self: _Editor, change: RouteEdit) -> str:
        return apply(self, change).replace(*slip)

    monkeypatch.setattr(_Editor, "apply", slipping)
    with pytest.raises(EditError, match=reason):
        edit(ROUTES, RouteEdit("pay", weight=1, state=STATE))
