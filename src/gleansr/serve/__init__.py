"""``gleansr serve``: a local web page and HTTP API for super-resolution (extra ``gleansr[serve]``).

:func:`gleansr.serve.app.create_app` builds the FastAPI application from a
:class:`~gleansr.serve.config.ServeConfig`; this package's ``__init__`` imports nothing heavy so
that ``gleansr serve --help`` stays fast and works without the extra installed.
"""
