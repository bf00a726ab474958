"""The repository's Prefect entry points: each module re-exports a flow of `darts_aux.flows`, where the flows live.

Installed users import `darts_aux.flows.<module>`; these modules keep the repository's entrypoints
(`flows.arcticdem.fill_arcticdem`, `python -m flows.deployments`) working. The wheel does not ship them.
"""
