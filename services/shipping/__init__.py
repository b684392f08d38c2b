"""The shipping service."""
