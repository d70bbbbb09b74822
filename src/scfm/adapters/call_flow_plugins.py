"""Discover third-party call flow logic via entry points and build the call flow registry."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points

from scfm.domain.call_flow_logic import CallFlowRegistry

ENTRY_POINT_GROUP = "scfm.call_flow_logic"


def load_entry_point_flows(
    group: str = ENTRY_POINT_GROUP, *, only: Iterable[str] | None = None
) -> dict[str, object]:
    wanted = None if only is None else set(only)
    flows: dict[str, object] = {}
    for entry_point in entry_points(group=group):
        # Skipping unwanted names means a broken, unlisted plugin cannot stop the app.
        if wanted is not None and entry_point.name not in wanted:
            continue
        if entry_point.name in flows:
            raise ValueError(f"call flow logic {entry_point.name!r} is provided by more than one entry point")
        try:
            flows[entry_point.name] = entry_point.load()
        except Exception as error:
            raise RuntimeError(
                f"could not load call flow logic {entry_point.name!r} ({entry_point.value}): {error}"
            ) from error
    return flows


def parse_names(csv: str | None) -> list[str]:
    return [name.strip() for name in (csv or "").split(",") if name.strip()]


def build_registry(registered_csv: str | None, default: str | None) -> CallFlowRegistry:
    registered = parse_names(registered_csv)
    extra = load_entry_point_flows(only=registered)
    return CallFlowRegistry(registered=registered, default=default, extra=extra)
