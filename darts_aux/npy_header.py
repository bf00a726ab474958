"""One lock for parsing .npy headers, shared by every reader of .npy and .npz data in the process.

numpy parses an .npy header with ``ast.literal_eval``, and CPython 3.11's AST constructor is not thread-safe
(gh-106905): parallel parses of Earth Engine answers in download threads raised "AST constructor recursion depth
mismatch". Commit tasks parse the headers of staged chunks' .npz files the same way, so they take the lock too.
The headers are a few hundred bytes, so parsing them one at a time costs nothing measurable.
"""

from __future__ import annotations

import threading

NPY_HEADER_LOCK = threading.Lock()
"""Held while numpy parses an .npy header (an Earth Engine answer, or an array of a staged chunk's .npz file)."""
