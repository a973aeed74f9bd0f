"""Long texts cut into chunks for spaCy and Presidio, preferably between sentences."""

from __future__ import annotations

from memstream.privacy.entities import CHUNK_CHARS


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[tuple[int, str]]:
    """Split ``text`` into ``(offset, piece)`` chunks of at most ``size`` characters.

    Cuts prefer a line break, then a sentence end, then any whitespace in the last fifth of the
    window, so that an entity is rarely split across two chunks.
    """
    if len(text) <= size:
        return [(0, text)]
    out: list[tuple[int, str]] = []
    pos = 0
    n = len(text)
    while pos < n:
        end = min(pos + size, n)
        if end < n:
            lo = pos + size * 4 // 5
            cut = text.rfind("\n", lo, end)
            if cut < 0:
                cut = max(
                    text.rfind(". ", lo, end), text.rfind("? ", lo, end), text.rfind("! ", lo, end)
                )
                cut = cut + 1 if cut >= 0 else -1
            if cut < 0:
                cut = max(text.rfind(" ", lo, end), text.rfind("\t", lo, end))
            if cut > pos:
                end = cut + 1 if text[cut] in " \n\t" else cut
        out.append((pos, text[pos:end]))
        pos = end
    return out
