import time

from otree.api import *

doc = """
A 3-player public goods game. Participants are grouped by arrival time, so those who declined
consent or left early never block the others. The contribution page has a timeout: a
participant who closed the browser is auto-submitted with a zero contribution.
"""


class C(BaseConstants):
    NAME_IN_URL = 'public_goods'
    PLAYERS_PER_GROUP = 3
    NUM_ROUNDS = 1
    ENDOWMENT = cu(100)
    MULTIPLIER = 2


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    total_contribution = models.CurrencyField()
    individual_share = models.CurrencyField()


class Player(BasePlayer):
    contribution = models.CurrencyField(
        min=0, max=C.ENDOWMENT, label='How much will you contribute to the group account?'
    )
    timed_out = models.BooleanField(initial=False)
    played_alone = models.BooleanField(initial=False)


def in_full_group(player: Player):
    return len(player.get_others_in_group()) == C.PLAYERS_PER_GROUP - 1


def set_payoffs(group: Group):
    players = group.get_players()
    group.total_contribution = sum(p.contribution for p in players)
    group.individual_share = group.total_contribution * C.MULTIPLIER / C.PLAYERS_PER_GROUP
    for p in players:
        p.payoff = C.ENDOWMENT - p.contribution + group.individual_share


class Instructions(Page):
    @staticmethod
    def before_next_page(player: Player, timeout_happened):
        player.participant.grouping_arrival_time = time.time()


class GroupingWaitPage(WaitPage):
    group_by_arrival_time = True
    body_text = 'Waiting for two other participants to join your group.'

    @staticmethod
    def is_displayed(player: Player):
        return True


def group_by_arrival_time_method(subsession: Subsession, waiting_players):
    if len(waiting_players) >= C.PLAYERS_PER_GROUP:
        return waiting_players[: C.PLAYERS_PER_GROUP]
    max_wait = subsession.session.config['grouping_max_wait_seconds']
    for player in waiting_players:
        if time.time() - player.participant.grouping_arrival_time > max_wait:
            player.played_alone = True
            return [player]


class Contribute(Page):
    form_model = 'player'
    form_fields = ['contribution']

    @staticmethod
    def is_displayed(player: Player):
        return in_full_group(player)

    @staticmethod
    def get_timeout_seconds(player: Player):
        return player.session.config['contribute_timeout_seconds']

    @staticmethod
    def before_next_page(player: Player, timeout_happened):
        if timeout_happened:
            player.timed_out = True
            player.contribution = cu(0)


class ResultsWaitPage(WaitPage):
    after_all_players_arrive = set_payoffs
    body_text = 'Waiting for the other participants to decide.'

    @staticmethod
    def is_displayed(player: Player):
        return in_full_group(player)


class Results(Page):
    @staticmethod
    def is_displayed(player: Player):
        return in_full_group(player)


def custom_export(players):
    """Listed under the admin's "Custom exports": one row per player, next to the group's total."""
    yield ['session', 'participant', 'label', 'group', 'contribution', 'group_total', 'timed_out', 'payoff']
    for p in players:
        yield [p.session.code, p.participant.code, p.participant.label, p.group.id_in_subsession,
               p.field_maybe_none('contribution'), p.group.field_maybe_none('total_contribution'),
               p.timed_out, p.payoff]


page_sequence = [Instructions, GroupingWaitPage, Contribute, ResultsWaitPage, Results]
