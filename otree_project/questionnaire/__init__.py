from otree.api import *

doc = """A short questionnaire after the game."""


class C(BaseConstants):
    NAME_IN_URL = 'questionnaire'
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    understood = models.IntegerField(
        label='How well did you understand the game? (1 = not at all, 7 = completely)',
        choices=list(range(1, 8)),
        widget=widgets.RadioSelectHorizontal,
    )
    fairness = models.IntegerField(
        label='How fair did you find the other participants? (1 = not at all, 7 = very)',
        choices=list(range(1, 8)),
        widget=widgets.RadioSelectHorizontal,
    )
    strategy = models.LongStringField(label='How did you decide how much to contribute?', blank=True)


class Questionnaire(Page):
    form_model = 'player'
    form_fields = ['understood', 'fairness', 'strategy']

    @staticmethod
    def before_next_page(player: Player, timeout_happened):
        player.participant.finished = True


page_sequence = [Questionnaire]
