"""Runs inside the oTree image, for tests/test_render_cache.py: `otree prodserver` in one process
on one database, where each request is served with the render cache and the compiled lookups
(otree_server/render_cache.py and compiled_lookups.py, the replacements the image applies) when it
carries the header `x-render-cache: on`, and as oTree comes without it. The cache itself stays
filled between the requests that use it, as in production.

    python /opt/render-cache-test/render_cache_toggle.py prodserver 0.0.0.0:8000"""
import sys

sys.path.insert(0, "/opt/otree-server")
import otree.main  # noqa: E402
import compiled_lookups  # noqa: E402
import render_cache  # noqa: E402


def setup():
    oTree_setup()
    replacements = render_cache.replacements() + compiled_lookups.replacements()
    from otree.asgi import app
    stack = app.middleware_stack

    async def toggled(scope, receive, send):
        cached = scope["type"] == "http" and (b"x-render-cache", b"on") in scope["headers"]
        if cached:
            for owner, name, _, replacement in replacements:
                setattr(owner, name, replacement)
        try:
            await stack(scope, receive, send)
        finally:
            if cached:
                for owner, name, original, _ in replacements:
                    setattr(owner, name, original)

    app.middleware_stack = toggled  # what the app calls for every request


oTree_setup = otree.main.setup
otree.main.setup = setup
sys.exit(otree.main.execute_from_command_line())
