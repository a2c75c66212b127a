"""plugmq federation: links between brokers and the routes that move messages over them.

See docs/plugins/federation.md. ``plugin.py`` holds the hook implementations; the logic is in
the modules beside it (routes, links, bridges, the path header, the duplicate window).
"""
