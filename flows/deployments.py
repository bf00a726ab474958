"""`python -m flows.deployments [--data-dir DIR]` from the repository: serves `darts_aux.flows.deployments`."""

from darts_aux.flows.deployments import DEPLOYMENTS, main, serve_all

__all__ = ["DEPLOYMENTS", "main", "serve_all"]

if __name__ == "__main__":
    main()
