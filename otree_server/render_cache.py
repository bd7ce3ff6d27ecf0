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
3. The SQL of the two lookups of every page request: the participant by its code and the player
   by participant and round. SQLAlchemy 1.3 builds and compiles a query's SQL anew each time
   (0.7 ms a lookup); these are kept compiled as SQLAlchemy's own baked queries, which run the same
   SELECT, autoflush first and fill the same identity map. Only lookups by plain values (a string
   or an integer per column, or a loaded participant) take this path; any other goes to oTree's
   own code, and so does a lookup that finds nothing, to raise oTree's own error.

It depends on oTree's internals, so it applies only to the oTree versions the tests have proven;
on any other version oTree runs as it is and the log says why."""
import logging
import sys

SETTING = "OTREE_RENDER_CACHE"
TESTED_VERSIONS = ("6.0.15",)
# The modules that hold url_of_static_file by name (`from otree.common2 import ...`).
STATIC_URL_HOLDERS = ("otree.common2", "otree.templating.nodes", "otree.api")

log = logging.getLogger("otree.stack")


class NotApplicable(Exception):
    pass


def replacements():
    """[(owner, attribute name, oTree's own, the cached one)], or NotApplicable saying why not.
    Call it after otree.main.setup(): importing oTree's modules earlier would freeze settings
    that oTree's command line sets in the environment first."""
    import otree
    if otree.__version__ not in TESTED_VERSIONS:
        raise NotApplicable(f"it is proven on oTree {', '.join(TESTED_VERSIONS)} only, and this is "
                            f"oTree {otree.__version__}")
    return _formfield_templates() + _static_urls() + _lookups()


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


def _lookups():
    from sqlalchemy import bindparam, inspect
    from sqlalchemy.ext import baked
    from sqlalchemy.orm.exc import NoResultFound
    from sqlalchemy.orm.interfaces import MANYTOONE
    from otree.database import AnyModel, DBWrapper, db

    bakery = baked.bakery()

    def columns(model, criteria):
        """{column: value} when every criterion is a string or integer for one of the model's columns,
        or a participant (any loaded row) for a many-to-one relationship over one column; else None."""
        mapper = inspect(model, raiseerr=False)
        if mapper is None:
            return None
        found = {}
        for name, value in criteria.items():
            if name in mapper.column_attrs and type(value) in (str, int):
                found[name] = value
            elif name in mapper.relationships and len(mapper.relationships[name].local_remote_pairs) == 1:
                relationship = mapper.relationships[name]
                (local, remote), = relationship.local_remote_pairs
                identity = getattr(value, "__dict__", {}).get(remote.key)  # loaded: reading it runs no SQL
                if (relationship.direction is not MANYTOONE or not isinstance(value, relationship.mapper.class_)
                        or type(identity) is not int):
                    return None
                found[local.key] = identity
            else:
                return None
        return found

    def baked_one(session, model, criteria):
        names = tuple(sorted(criteria))
        query = bakery(lambda session: session.query(model), model, names)  # the model and names key the cache
        query += lambda query: query.filter_by(**{name: bindparam(name) for name in names})
        return query(session).params(**criteria).one()

    original_get_or_404 = DBWrapper.get_or_404

    def get_or_404(self, Model, msg="Not found (maybe the session was deleted)", **kwargs):
        criteria = columns(Model, kwargs)
        if criteria:
            try:
                return baked_one(self._db, Model, criteria)
            except NoResultFound:
                pass  # oTree's own lookup says what is missing
        return original_get_or_404(self, Model, msg, **kwargs)

    original_objects_get = AnyModel.__dict__["objects_get"]

    def objects_get(cls, *args, **kwargs):
        criteria = None if args else columns(cls, kwargs)
        if criteria:
            try:
                return baked_one(db._db, cls, criteria)
            except NoResultFound:
                pass
        return original_objects_get.__func__(cls, *args, **kwargs)

    get_or_404.__doc__ = original_get_or_404.__doc__
    return [(DBWrapper, "get_or_404", original_get_or_404, get_or_404),
            (AnyModel, "objects_get", original_objects_get, classmethod(objects_get))]


def apply(value):
    """Apply the cache unless the setting is off or this oTree is not proven; say which in the log."""
    if value == "off":
        log.info(f"Render cache off ({SETTING}=off): oTree compiles its formfield templates, looks up "
                 "static file URLs and compiles its lookups' SQL again on every page.")
        return False
    try:
        found = replacements()
    except NotApplicable as reason:
        log.warning(f"Render cache skipped: {reason}. Pages are served as oTree renders them, only without "
                    f"this speed-up. Nothing to do; to silence this, set {SETTING}=off.")
        return False
    for owner, name, _, cached in found:
        setattr(owner, name, cached)
    log.info(f"Render cache on: formfield templates compiled once, static file URLs looked up once, participant "
             f"and player lookups compiled to SQL once; pages are unchanged ({SETTING}=off turns it off).")
    return True
