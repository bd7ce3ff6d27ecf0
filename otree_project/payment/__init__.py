from otree.api import *

doc = """The last page: shows the payment and sends the participant back to Prolific."""


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
        return dict(
            consented=participant.consented,
            total=participant.payoff_plus_participation_fee(),
            completionlink=player.session.config['completionlink'],
        )


page_sequence = [Payment]
