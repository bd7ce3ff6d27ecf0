from otree.api import *

doc = """The last page: shows the payment and sends the participant back to Prolific, or lets an
MTurk worker submit the HIT."""

# Where a HIT framed on MTurk's site submits its assignment (MTurk's "externalSubmit").
MTURK_SUBMIT_URL = 'https://www.mturk.com/mturk/externalSubmit'
MTURK_SANDBOX_SUBMIT_URL = 'https://workersandbox.mturk.com/mturk/externalSubmit'


class C(BaseConstants):
    NAME_IN_URL = 'payment'
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    pass


class Payment(Page):
    @staticmethod
    def vars_for_template(player: Player):
        participant = player.participant
        session = player.session
        return dict(
            consented=participant.consented,
            total=participant.payoff_plus_participation_fee(),
            # Prolific's completion link, in the configs for Prolific.
            completionlink=session.config.get('completionlink'),
            platform='Prolific' if 'completionlink' in session.config else 'MTurk',
            # Set by oTree's MTurk start link (/MTurkStart/...?assignmentId=...), None otherwise.
            mturk_assignment_id=participant.mturk_assignment_id,
            mturk_submit_url=MTURK_SANDBOX_SUBMIT_URL if session.mturk_use_sandbox else MTURK_SUBMIT_URL,
        )


page_sequence = [Payment]
