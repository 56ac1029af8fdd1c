"""cl_core: the pure curriculum-learning library (no Prefect).

Submodules import their heavy dependencies lazily; ``import cl_core`` is cheap, and
``cl_core.sampler`` needs only numpy and the standard library.
"""

__version__ = "0.1.0"
CODE_VERSION = __version__
