from otree.api import Bot, expect
from . import Demographics


class PlayerBot(Bot):
    def play_round(self):
        yield Demographics, dict(age=34, gender='Female')
        expect(self.player.prolific_id, self.participant.label or '')
