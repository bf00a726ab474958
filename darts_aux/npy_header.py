"""One lock for parsing .npy headers, shared by every reader of .npy and .npz data in the process.

numpy parses an .npy header with ``ast.literal_eval``, and CPython 3.11's AST constructor is not thread-safe
(gh-106905): parallel parses in download threads and commit tasks raised "AST constructor recursion depth mismatch".
The headers are a few hundred bytes, so parsing them one at a time costs nothing measurable.
"""

from __future__ import annotations

import threading

NPY_HEADER_LOCK = threading.Lock()
"""Held while numpy parses an .npy header (an Earth Engine answer, or an array of a staged chunk's .npz file)."""
