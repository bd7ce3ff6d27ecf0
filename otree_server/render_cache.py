"""The render cache: two results oTree 6 computes again on every page, though they never change
while the server runs, kept after the first time. Pages stay byte for byte what oTree renders
(tests/test_render_cache.py compares every page of two projects with and without it).

1. The formfield templates. `{{ formfields }}` and `{{ formfield }}` compile the same two
   template strings, constants in oTree's templating/nodes.py, for every field of every form:
   1.3 ms a field. Only the compiled tree is kept, per string; each field still gets a fresh
   Template and is rendered with its own values (render state lives in the per-render Context,
   as for the page templates, which oTree itself compiles once).
2. `{% static %}` URLs. oTree checks that the file exists (and remembers the files it found, for
   good) and then reverses the URL through its whole route table: 0.18 ms a tag. The URL of a
   file that was found is kept; a missing file still raises FileNotFoundError every time.

It depends on oTree's internals, so it applies only to the oTree versions the tests have proven;
on any other version oTree runs as it is and the log says why. So does compiled_lookups.py, the
image's other change to oTree's request path, with its own setting."""
import logging
import sys

SETTING = "OTREE_RENDER_CACHE"
TESTED_VERSIONS = ("6.0.15",)
# The modules that hold url_of_static_file by name (`from otree.common2 import ...`).
STATIC_URL_HOLDERS = ("otree.common2", "otree.templating.nodes", "otree.api")

log = logging.getLogger("otree.stack")


class NotApplicable(Exception):
    pass


def check_version():
    """NotApplicable unless this oTree is one the tests have proven."""
    import otree
    if otree.__version__ not in TESTED_VERSIONS:
        raise NotApplicable(f"it is proven on oTree {', '.join(TESTED_VERSIONS)} only, and this is "
                            f"oTree {otree.__version__}")


def replacements():
    """[(owner, attribute name, oTree's own, the cached one)], or NotApplicable saying why not.
    Call it after otree.main.setup(): importing oTree's modules earlier would freeze settings
    that oTree's command line sets in the environment first."""
    check_version()
    return _formfield_templates() + _static_urls()


def _formfield_templates():
    from otree.templating import nodes
    from otree.templating.template import Template

    # Read from oTree's own code, so that only its two constants are ever cached.
    strings = {constant for function in (nodes._render_formfield, nodes.FormFields.wrender)
               for constant in function.__code__.co_consts
               if isinstance(constant, str) and ("{%" in constant or "{{" in constant)}
    if len(strings) != 2:
        raise NotApplicable("oTree's formfield templates are not where this oTree version keeps them")
    original = Template.__init__
    compiled = {}  # template string: (root node, block registry)

    def __init__(self, template_string, template_id="UNIDENTIFIED", template_type=""):
        if (template_id == "UNIDENTIFIED" and not template_type and type(template_string) is str
                and template_string in strings):
            if template_string not in compiled:
                original(self, template_string, template_id, template_type)
                compiled[template_string] = (self.root_node, self.block_registry)
            self.root_node, self.block_registry = compiled[template_string]
            return
        original(self, template_string, template_id, template_type)

    return [(Template, "__init__", original, __init__)]


def _static_urls():
    import otree.api  # noqa: F401 (one of the holders, imported so that it is in sys.modules)
    import otree.common2

    original = otree.common2.url_of_static_file
    urls = {}

    def url_of_static_file(path):
        try:
            return urls[path]
        except (KeyError, TypeError):  # not seen yet, or unhashable: oTree's own answer
            pass
        url = original(path)  # FileNotFoundError for a missing file, never kept
        try:
            urls[path] = url
        except TypeError:
            pass
        return url

    url_of_static_file.__doc__ = original.__doc__
    return [(sys.modules[name], "url_of_static_file", original, url_of_static_file)
            for name in STATIC_URL_HOLDERS if getattr(sys.modules[name], "url_of_static_file", None) is original]


def apply(value):
    """Apply the cache unless the setting is off or this oTree is not proven; say which in the log."""
    return switch(value, SETTING, "Render cache", replacements,
                  on="formfield templates compiled once, static file URLs looked up once",
                  off="oTree compiles its formfield templates and looks up static file URLs again on every page")


def switch(value, setting, title, make_replacements, on, off):
    """Put one speed-up's replacements in place unless its setting is off or this oTree is not
    proven; the log says which at every start. True when applied."""
    if value == "off":
        log.info(f"{title} off ({setting}=off): {off}.")
        return False
    try:
        found = make_replacements()
    except NotApplicable as reason:
        log.warning(f"{title} skipped: {reason}. Pages are served as oTree serves them, only without "
                    f"this speed-up. Nothing to do; to silence this, set {setting}=off.")
        return False
    for owner, name, _, replacement in found:
        setattr(owner, name, replacement)
    log.info(f"{title} on: {on}; pages are unchanged ({setting}=off turns it off).")
    return True
