from otree.api import *


doc = """
Two form pages and a results page, written as in oTree's own tutorial.
"""


class C(BaseConstants):
    NAME_IN_URL = 'survey'
    PLAYERS_PER_GROUP = None
    NUM_ROUNDS = 1


class Subsession(BaseSubsession):
    pass


class Group(BaseGroup):
    pass


class Player(BasePlayer):
    age = models.IntegerField(label='What is your age?', min=13, max=125)
    gender = models.StringField(
        choices=[['Male', 'Male'], ['Female', 'Female'], ['Other', 'Other']],
        label='What is your gender?',
        widget=widgets.RadioSelect,
    )
    crt_bat = models.IntegerField(label='A bat and a ball cost 22 dollars in total. '
                                        'The bat costs 20 dollars more than the ball. '
                                        'How many dollars does the ball cost?')


class Demographics(Page):
    form_model = 'player'
    form_fields = ['age', 'gender']


class CognitiveReflectionTest(Page):
    form_model = 'player'
    form_fields = ['crt_bat']


class Results(Page):
    pass


page_sequence = [Demographics, CognitiveReflectionTest, Results]
