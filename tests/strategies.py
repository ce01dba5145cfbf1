"""Hypothesis strategies for data a session can store."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def storable_values(
    *, text_size: int, key_size: int, container_size: int, max_leaves: int
) -> st.SearchStrategy[Any]:
    """Values of every type a session stores, nested in lists and dicts."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**64), max_value=2**64 - 1)
        | st.floats(allow_nan=False)
        | st.text(max_size=text_size)
        | st.binary(max_size=text_size)
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=container_size)
            | st.dictionaries(
                st.text(max_size=key_size), inner, max_size=container_size
            )
        ),
        max_leaves=max_leaves,
    )
