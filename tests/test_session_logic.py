"""`invoke session create`'s arithmetic and checks (no Docker): places, spare, whole groups, the
study URL for Prolific, and the refusals that create nothing."""
import pytest

from stack import session
from stack.console import StackError

pytestmark = pytest.mark.unit

FACTS = {"rooms": {"prolific": {"labels_file": False, "session": None}},
         "configs": {"prolific_study": 3, "survey_only": 1}}


def test_the_session_has_spare_places_in_whole_groups():
    assert session.session_size(10, session.spare_factor("1.5"), 3) == 15
    assert session.session_size(10, session.spare_factor("1.5"), 1) == 15
    assert session.session_size(11, session.spare_factor("1.5"), 1) == 17  # 16.5 rounded up
    assert session.session_size(11, session.spare_factor("1.5"), 3) == 18
    assert session.session_size(10, session.spare_factor("1"), 3) == 12
    assert session.session_size(1, session.spare_factor("1"), 1) == 1
    # Exact decimals: 10 x 1.1 is 11 (binary floating point would make it 11.000000000000002, so 12).
    assert session.session_size(10, session.spare_factor("1.1"), 1) == 11
    assert session.session_size(10, session.spare_factor(1.1), 1) == 11
    assert session.session_size(10, session.spare_factor(session.DEFAULT_SPARE), 4) == 16


def test_the_size_is_explained():
    def reason(places, spare, multiple):
        factor = session.spare_factor(spare)
        return session.size_reason(places, factor, multiple, session.session_size(places, factor, multiple))
    assert reason(10, "1.5", 3) == "10 x 1.5"
    assert reason(11, "1.5", 1) == "11 x 1.5 = 16.5, rounded up"
    assert reason(10, "1.1", 3) == "10 x 1.1 = 11, rounded up to whole groups of 3"
    assert reason(10, "1.25", 3) == "10 x 1.25 = 12.5, rounded up to whole groups of 3"  # 13, then 15


@pytest.mark.parametrize("places", ["0", "-3", "2.5", "ten", "", " ", "1e3"])
def test_places_must_be_a_positive_whole_number(places):
    with pytest.raises(StackError, match="--places must be a whole number above 0.*Nothing was created"):
        session.places_number(places)


def test_places_accepts_whole_numbers():
    assert session.places_number("10") == 10
    assert session.places_number(" 7 ") == 7
    assert session.places_number(3) == 3


@pytest.mark.parametrize("spare", ["0.99", "0", "-1.5", "x", "", "nan", "inf", "Infinity"])
def test_spare_below_one_or_not_a_number_is_refused(spare):
    with pytest.raises(StackError, match="--spare must be a number of 1 or more.*Nothing was created"):
        session.spare_factor(spare)


def test_the_study_url_carries_prolifics_own_parameters():
    assert session.study_url("https://study.example.edu/", "prolific") == (
        "https://study.example.edu/room/prolific?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}"
        "&SESSION_ID={{%SESSION_ID%}}")
    assert session.study_url("https://203.0.113.7:8444/", "pilot").startswith("https://203.0.113.7:8444/room/pilot?")


def test_unknown_room_and_config_are_refused_with_the_projects_own():
    assert session.check_request(FACTS, "prolific", "prolific_study") == 3
    with pytest.raises(StackError, match="no room 'lab'. The project's rooms: prolific. Nothing was created"):
        session.check_request(FACTS, "lab", "prolific_study")
    with pytest.raises(StackError, match="no session config 'game'. The project's: prolific_study, survey_only"):
        session.check_request(FACTS, "prolific", "game")
    with pytest.raises(StackError, match="The project has no rooms: add one to ROOMS"):
        session.check_request({"rooms": {}, "configs": FACTS["configs"]}, "prolific", "prolific_study")


def test_a_room_with_a_session_is_refused_naming_it_and_the_way_on():
    occupant = {"code": "abc123", "config_name": "prolific_study", "num_participants": 15, "created_at": 1764558000}
    with pytest.raises(StackError) as refused:
        session.refuse_occupied("prolific", occupant, "4")
    message = str(refused.value)
    for expected in ("already has a session abc123", "'prolific_study', 15 places", "created 2025-12-01 03:00 UTC",
                     "4 participant(s) entered", "would replace it", "stranded", "Nothing was created",
                     "Close this room"):
        assert expected in message
