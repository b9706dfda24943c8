"""Validate OpenLineage events against the specification's JSON Schemas, offline.

The event against `OpenLineage.json#/$defs/RunEvent`, then every facet against the schema its
`_schemaURL` names (the stored files in tests/openlineage_spec/, resolved by `$id`). A facet
whose schema is not stored fails: nothing passes unvalidated."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

SPEC = Path(__file__).parent / "openlineage_spec"


@cache
def _registry() -> Registry:
    resources = []
    for path in [SPEC / "OpenLineage.json", *sorted((SPEC / "facets").glob("*.json"))]:
        schema = json.loads(path.read_text("utf-8"))
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


def _check(instance: Any, ref: str) -> None:
    base = ref.split("#", 1)[0]
    if base not in _registry():
        raise AssertionError(f"no stored schema for {ref}: add it to tests/openlineage_spec/")
    validator = jsonschema.Draft202012Validator(
        {"$ref": ref}, registry=_registry(), format_checker=jsonschema.FormatChecker()
    )
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path)
        raise AssertionError(f"{ref}: {first.message} at /{where}")


def _facets(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [(f"run.{k}", v) for k, v in (event["run"].get("facets") or {}).items()]
    found += [(f"job.{k}", v) for k, v in (event["job"].get("facets") or {}).items()]
    for side in ("inputs", "outputs"):
        for d in event.get(side) or []:
            for group in ("facets", "inputFacets", "outputFacets"):
                found += [(f"{side}.{d['name']}.{k}", v) for k, v in (d.get(group) or {}).items()]
    return found


def validate_event(event: dict[str, Any]) -> int:
    """Raise AssertionError naming the first violation; return the number of facets checked."""
    _check(event, "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent")
    facets = _facets(event)
    for where, facet in facets:
        url = facet.get("_schemaURL")
        if not url:
            raise AssertionError(f"facet {where} has no _schemaURL")
        try:
            _check(facet, url)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None
    return len(facets)
