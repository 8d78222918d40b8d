"""Serving on Ray Serve: the serving core in every replica, KServe v2 on Ray's HTTP proxy.

``deployment`` holds the application (its builder for ``serve run`` / ``serve deploy``),
``cluster`` the driver that ``ovcast serve --mode ray`` runs, ``config`` the settings.
Nothing here is imported unless Ray is used: ``pip install 'ovcast[ray]'``.
"""
