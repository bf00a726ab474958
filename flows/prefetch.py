"""Entry point of the repository for `darts_aux.flows.prefetch`."""

from darts_aux.flows.prefetch import prefetch_regions

__all__ = ["prefetch_regions"]
