"""Helpers shared by the use cases: listing pages and applying metadata changes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from scfm.domain.errors import ValidationFailed
from scfm.domain.model import Entity
from scfm.domain.ports import E, Repository, Within
from scfm.domain.call_flow_logic import CallFlowRegistry
from scfm.domain.filters import FilterSpec, parse_filters
from scfm.domain.values import MergeMode, normalize_msisdn

MAX_PER_PAGE = 100


@dataclass
class PageRequest:
    page: int = 1
    per_page: int = 25


@dataclass
class Page:
    items: list[Any]
    total: int
    page: int
    per_page: int
    total_is_estimate: bool = False


def list_page(repo: Repository[E], spec: FilterSpec, q: Any, paging: PageRequest,
              within: Sequence[Within] = ()) -> Page:
    conditions = parse_filters(spec, q)
    items, total, estimated = repo.list(conditions, within, paging.page, paging.per_page)
    return Page(items, total, paging.page, paging.per_page, estimated)


def apply_metadata(entity: Entity, params: dict[str, Any]) -> None:
    """Apply `metadata` with `metadata_merge_mode` (whatever their order)."""
    mode = MergeMode.parse(params.get("metadata_merge_mode"))
    if "metadata" in params:
        entity.update_metadata(params["metadata"], mode)


def check_call_flow_logic(call_flows: CallFlowRegistry, params: dict[str, Any]) -> bool:
    """Whether params set call_flow_logic (blank clears it); an unregistered name is a 422."""
    if "call_flow_logic" not in params:
        return False
    name = params["call_flow_logic"]
    if name in (None, ""):
        params["call_flow_logic"] = None
    elif not call_flows.is_registered(name):
        raise ValidationFailed.on("call_flow_logic", "is not included in the list")
    return True


def apply_attributes(entity: Entity, params: dict[str, Any], call_flows: CallFlowRegistry | None = None) -> None:
    """Apply metadata, and call_flow_logic and msisdn where the entity has them."""
    apply_metadata(entity, params)
    if call_flows is not None and check_call_flow_logic(call_flows, params):
        setattr(entity, "call_flow_logic", params["call_flow_logic"])
    if "msisdn" in params and hasattr(entity, "msisdn"):
        setattr(entity, "msisdn", normalize_msisdn(params["msisdn"]))


def assign(entity: Entity, params: dict[str, Any], names: set[str]) -> None:
    for name in names & params.keys():
        setattr(entity, name, params[name])
