"""CrossGuard policy pack of home-derp.

The rules live in ``policy.rules`` so tests import them without starting the analyzer server;
``policy/__main__.py`` is what ``pulumi preview --policy-pack policy`` runs.
"""
