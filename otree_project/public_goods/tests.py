from otree.api import cu
from otree.api import Bot, expect
from . import C, Contribute, Instructions, Results


class PlayerBot(Bot):
    def play_round(self):
        yield Instructions
        yield Contribute, dict(contribution=cu(10) * self.player.id_in_group)
        # Contributions 10, 20, 30: 60 in total, doubled and shared gives 40 each.
        expect(self.group.total_contribution, cu(60))
        expect(self.player.payoff, C.ENDOWMENT - self.player.contribution + cu(40))
        yield Results
