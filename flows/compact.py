"""Entry point of the repository for `darts_aux.flows.compact`."""

from darts_aux.flows.compact import compact_manifest

__all__ = ["compact_manifest"]
