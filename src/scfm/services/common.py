"""Helpers shared by the use cases: listing pages and applying metadata changes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scfm.domain.filters import FilterSpec, parse_filters
from scfm.domain.values import MergeMode

MAX_PER_PAGE = 100


@dataclass
class PageRequest:
    page: int = 1
    per_page: int = 25


@dataclass
class Page:
    items: list
    total: int
    page: int
    per_page: int


def list_page(repo, spec: FilterSpec, q: Any, paging: PageRequest, extra=()) -> Page:
    conditions = parse_filters(spec, q)
    items, total = repo.list(conditions, extra, paging.page, paging.per_page)
    return Page(items, total, paging.page, paging.per_page)


def apply_metadata(entity, params: dict) -> set[str]:
    """Apply `metadata` with `metadata_merge_mode` (whatever their order); the changed field names."""
    mode = MergeMode.parse(params.get("metadata_merge_mode"))
    if "metadata" not in params:
        return set()
    entity.update_metadata(params["metadata"], mode)
    return {"metadata"}


def assign(entity, params: dict, names: set[str]) -> set[str]:
    changed = set()
    for name in names & params.keys():
        setattr(entity, name, params[name])
        changed.add(name)
    return changed
