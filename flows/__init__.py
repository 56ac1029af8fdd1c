"""Prefect 3 flows, thin tasks, parameter models and the ``cl-curriculum`` CLI.

``flows._prefect_env`` runs first so that the embedded-server defaults are in the environment
before any submodule imports prefect.
"""

from flows import _prefect_env  # noqa: F401  (side effect: environment defaults)
