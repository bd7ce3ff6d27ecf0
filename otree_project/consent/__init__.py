from otree.api import *

doc = """Informed consent. Participants who decline skip to the last app."""


class C(BaseConstants):
    NAME_IN_URL = 'consent'
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    consent = models.BooleanField(
        label='I have read the information above and agree to take part.',
        choices=[[True, 'Yes, I agree'], [False, 'No, I do not agree']],
        widget=widgets.RadioSelect,
    )


class Consent(Page):
    form_model = 'player'
    form_fields = ['consent']

    @staticmethod
    def before_next_page(player: Player, timeout_happened):
        player.participant.consented = player.consent
        player.participant.finished = False

    @staticmethod
    def app_after_this_page(player: Player, upcoming_apps):
        if not player.consent:
            return upcoming_apps[-1]


page_sequence = [Consent]
