"""Long English text for language-model evaluation: offline from the stdlib, online from the hub."""

from __future__ import annotations


def pydoc_text() -> str:
    """The Python documentation topics that ship with every CPython (``pydoc_data.topics``): ~1 MB of
    real technical English, always offline. Sorted by topic so the text is the same everywhere."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))


def hub_text(spec: str) -> str:
    """``"<dataset>[:<config>]:<split>"`` through `datasets` (online): ``wikitext:wikitext-2-raw-v1:test``."""
    from datasets import load_dataset

    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ValueError(f"text={spec!r}: expected '<dataset>[:<config>]:<split>' or 'pydoc'")
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    rows = load_dataset(name, config, split=split)
    column = "text" if "text" in rows.column_names else rows.column_names[0]
    return "\n".join(r for r in rows[column] if r)


def load_text(spec: str) -> str:
    return pydoc_text() if spec == "pydoc" else hub_text(spec)
