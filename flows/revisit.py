"""Entry point of the repository for `darts_aux.flows.revisit`."""

from darts_aux.flows.revisit import revisit_partial_chunks

__all__ = ["revisit_partial_chunks"]
