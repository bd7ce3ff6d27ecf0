from otree.api import *

doc = """Every kind of form field oTree renders, in two rounds, with a group wait page and a timed page."""


class C(BaseConstants):
    NAME_IN_URL = 'forms'
    PLAYERS_PER_GROUP = 2
    NUM_ROUNDS = 2


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    number = models.IntegerField(label='A whole number <b>between</b> 1 and 10', min=1, max=10)
    share = models.FloatField(label='A share', min=0, max=1)
    amount = models.CurrencyField(label='An amount', min=0, max=5)
    name = models.StringField(label='Your name', max_length=20)
    story = models.LongStringField(label='A story', blank=True)
    agree = models.BooleanField(label='I agree', widget=widgets.CheckboxInput, blank=True)
    colour = models.StringField(choices=['red', 'green', 'blue'], label='A colour')
    size = models.IntegerField(choices=[[1, 'small'], [2, 'large']], widget=widgets.RadioSelect, label='A size')
    rating = models.IntegerField(choices=[1, 2, 3], widget=widgets.RadioSelectHorizontal, label='A rating')
    yes = models.BooleanField(label='Yes or no?')
    guess = models.IntegerField(label='Your guess')


def number_error_message(player, value):
    if value == 7:
        return 'Not 7, please.'


class Fields(Page):
    form_model = 'player'
    form_fields = ['number', 'share', 'amount', 'name', 'story', 'agree', 'colour', 'size', 'rating', 'yes']

    @staticmethod
    def error_message(player, values):
        if values['name'] == 'nobody':
            return 'Somebody, please.'


class OneByOne(Page):
    form_model = 'player'
    form_fields = ['guess']
    timeout_seconds = 600


class Together(WaitPage):
    body_text = 'Waiting for the other player.'


class Results(Page):
    pass


page_sequence = [Fields, OneByOne, Together, Results]
