from os import environ

# tests/test_render_cache.py: every kind of form field, labels, descriptions, errors, static
# files, rounds, a group wait page and a timed page, rendered with and without the render cache.
SESSION_CONFIGS = [
    dict(name='forms', display_name='Every kind of form field', app_sequence=['forms'], num_demo_participants=2),
]
SESSION_CONFIG_DEFAULTS = dict(real_world_currency_per_point=1.00, participation_fee=0.00, doc="")
PARTICIPANT_FIELDS = []
SESSION_FIELDS = []
LANGUAGE_CODE = 'en'
REAL_WORLD_CURRENCY_CODE = 'EUR'
USE_POINTS = False
ROOMS = [dict(name='lab', display_name='Lab')]
ADMIN_USERNAME = 'admin'
ADMIN_PASSWORD = environ.get('OTREE_ADMIN_PASSWORD')
SECRET_KEY = environ.get('OTREE_SECRET_KEY', 'tests-only')
