"""Runs inside the oTree image, for tests/test_render_cache.py: oTree's lookups with and without the
compiled lookups (otree_server/compiled_lookups.py), on one in-memory database, in one process.
Prints, as JSON, for each lookup whether both found the same row (or raised the same error) and
how many SQL statements SQLAlchemy compiled for the second of two calls.

    python /opt/render-cache-test/compiled_lookups_check.py CONFIG"""
import json
import os
import sys

os.environ["OTREE_IN_MEMORY"] = "1"
sys.path.insert(0, "/opt/otree-server")
import otree.main  # noqa: E402
import compiled_lookups  # noqa: E402

otree.main.setup()
from sqlalchemy.sql import compiler  # noqa: E402
from otree.common import get_models_module  # noqa: E402
from otree.database import db  # noqa: E402
from otree.models import Participant, Session  # noqa: E402
from otree.session import SESSION_CONFIGS_DICT, create_session  # noqa: E402

replacements = compiled_lookups.replacements()
compiled = []
compile_sql = compiler.SQLCompiler.__init__


def counting(self, *args, **kwargs):
    compiled.append(1)
    compile_sql(self, *args, **kwargs)


compiler.SQLCompiler.__init__ = counting


def use(cached):
    for owner, name, original, replacement in replacements:
        setattr(owner, name, replacement if cached else original)


def outcome(lookup):
    """(what it found or raised, statements compiled the second time)"""
    results = []
    for _ in range(2):
        del compiled[:]
        try:
            found = lookup()
            results.append(f"{type(found).__name__} {found.id}")
        except Exception as error:
            results.append(f"{type(error).__name__} {getattr(error, 'detail', error)}")
    assert results[0] == results[1], results
    return results[0], len(compiled)


db.new_session()
config = sys.argv[1]
session = create_session(session_config_name=config, num_participants=SESSION_CONFIGS_DICT[config]["num_demo_participants"])
db.commit()
participant = session.pp_set[0]
Player = get_models_module(SESSION_CONFIGS_DICT[config]["app_sequence"][0]).Player
labels = iter(range(100))


def by_a_label_not_yet_written():
    """Found only if the lookup flushes the change first, as oTree's queries do (autoflush)."""
    participant.label = f"label {next(labels)}"
    return db.get_or_404(Participant, label=participant.label)


lookups = {
    "participant by code": lambda: db.get_or_404(Participant, code=participant.code),
    "session by code": lambda: db.get_or_404(Session, code=session.code),
    "player by participant and round": lambda: Player.objects_get(participant=participant, round_number=1),
    "player by participant id": lambda: Player.objects_get(participant_id=participant.id, round_number=1),
    "participant by a label set just before": by_a_label_not_yet_written,
    "participant by unknown code": lambda: db.get_or_404(Participant, code="nosuchcode", msg="Gone"),
    "player in a round that does not exist": lambda: Player.objects_get(participant=participant, round_number=99),
    "player with round None": lambda: Player.objects_get(participant=participant, round_number=None),
    "player by a participant not in the database": lambda: Player.objects_get(participant=Participant(),
                                                                                 round_number=1),
}
report = {}
for name, lookup in lookups.items():
    use(False)
    plain = outcome(lookup)
    use(True)
    cached = outcome(lookup)
    report[name] = dict(plain=plain[0], cached=cached[0], compiled_plain=plain[1], compiled_cached=cached[1])
print(json.dumps(report))
