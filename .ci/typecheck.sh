#!/usr/bin/env bash
# Type check: mypy over darts_aux/ and flows/ with the settings in pyproject.toml ([tool.mypy]), in the locked
# environment. Exits non-zero when mypy reports an error.
set -euo pipefail
cd "$(dirname "$0")/.."
uv run --frozen mypy
