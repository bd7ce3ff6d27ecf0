"""Compiled lookups: the SQL of the two lookups of every page request, the participant by its
code and the player by participant and round, built and compiled once. SQLAlchemy 1.3 builds and
compiles a query's SQL anew each time (0.7 ms a lookup, two a page, while oTree holds its one
lock); these run as SQLAlchemy's own baked queries, which send the same SELECT, autoflush first
and fill the same identity map. Only lookups by plain values (a string or an integer per column,
or a loaded participant) take this path; any other goes to oTree's own code, and so does a lookup
that finds nothing, to raise oTree's own error. tests/test_render_cache.py compares each lookup's
result and every page with and without it.

Not a cache of any result: each lookup still asks Postgres. Its own setting, apart from the
render cache, and like it applied only to the oTree versions the tests have proven."""
import render_cache

SETTING = "OTREE_COMPILED_LOOKUPS"


def replacements():
    """[(owner, attribute name, oTree's own, the compiled one)], or NotApplicable saying why not.
    Call it after otree.main.setup(), as render_cache.replacements()."""
    render_cache.check_version()
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
    """Compile the lookups unless the setting is off or this oTree is not proven; say which in the log."""
    return render_cache.switch(value, SETTING, "Compiled lookups", replacements,
                               on="the participant and player lookups' SQL compiled once",
                               off="SQLAlchemy compiles the SQL of oTree's lookups again on every page")
