"""The reliable handling core shared by all five services: written once, used by all."""
