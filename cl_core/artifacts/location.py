"""Transitional: the names :mod:`cl_core.sampler` still imports from here.

Locations live in :mod:`cl_core.io` (a local ``Path`` or a ``upath.UPath`` for an fsspec URL);
delete this module once the sampler imports ``Location`` from there.
"""

from __future__ import annotations

from cl_core.io import Location, as_location, is_url

ObjectPath = Location  # retired class, named by the sampler in annotations only

__all__ = ["Location", "ObjectPath", "as_location", "is_url"]
