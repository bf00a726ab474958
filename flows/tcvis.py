"""Entry point of the repository for `darts_aux.flows.tcvis`."""

from darts_aux.flows.tcvis import fill_tcvis

__all__ = ["fill_tcvis"]
