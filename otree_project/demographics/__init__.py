from otree.api import *

doc = """Demographics. Keeps the Prolific ID that arrived as the participant label."""


class C(BaseConstants):
    NAME_IN_URL = 'demographics'
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    prolific_id = models.StringField()
    age = models.IntegerField(label='What is your age?', min=18, max=100)
    gender = models.StringField(
        label='What is your gender?',
        choices=['Female', 'Male', 'Non-binary', 'Prefer not to say'],
        widget=widgets.RadioSelect,
    )


class Demographics(Page):
    form_model = 'player'
    form_fields = ['age', 'gender']

    @staticmethod
    def vars_for_template(player: Player):
        return dict(prolific_id=player.participant.label)

    @staticmethod
    def before_next_page(player: Player, timeout_happened):
        # The room URL's participant_label is the Prolific ID (?participant_label={{%PROLIFIC_PID%}}).
        player.prolific_id = player.participant.label or ''


page_sequence = [Demographics]
