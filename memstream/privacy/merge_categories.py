"""Spans merged within each category (direct identifiers, quasi-identifiers), addresses
taking in the place and postcode that follow them."""

from __future__ import annotations

from memstream.privacy.entities import PiiSpan
from memstream.privacy.merging import _merge
from memstream.privacy.recognizers.places import _address_end


def merge_by_category(spans: list[PiiSpan], text: str) -> list[PiiSpan]:
    """Merge direct identifiers with each other and quasi-identifiers with each other, so
    a proper noun next to a name never stretches the name's span (and what is sealed by
    default) over ordinary words."""
    from memstream.privacy.categories import category_of

    groups: dict[str, list[PiiSpan]] = {}
    for span in spans:
        groups.setdefault(category_of(span.entity_type), []).append(span)
    merged = {name: _merge(group, text) for name, group in groups.items()}
    if "direct" in merged and "quasi" in merged:
        merged["direct"] = _address_blocks(merged["direct"], merged["quasi"], text)
    return sorted((s for group in merged.values() for s in group), key=lambda s: (s.start, s.end))


_BLOCK_PARTS = frozenset({"LOCATION", "ZIP_CODE", "PROPER_NOUN", "ORGANIZATION"})


def _address_blocks(direct: list[PiiSpan], quasi: list[PiiSpan], text: str) -> list[PiiSpan]:
    """An address is the street with its place and postcode: an ADDRESS span takes in the
    places, postcodes and proper nouns that directly follow it ("..., Mora de Rubielos,
    Spain 16200"), which on their own are kept as ordinary content."""
    parts = sorted((q for q in quasi if q.entity_type in _BLOCK_PARTS), key=lambda q: q.start)
    out = []
    for span in direct:
        if span.entity_type == "ADDRESS":
            end = span.end
            for part in parts:
                if part.end <= end or part.start < span.start:
                    continue
                if part.start <= end or _block_gap(text, end, part.start):
                    end = part.end
                elif part.start - end > 4:
                    break
            end = _address_end(text, max(end, span.end))  # and the postcode after the place
            span = PiiSpan(span.start, end, "ADDRESS", span.score)
        out.append(span)
    return _merge(out, text)


def _block_gap(text: str, end: int, start: int) -> bool:
    gap = text[end:start]
    return len(gap) <= 4 and all(ch in " \t\n,.;:()>-" for ch in gap)
