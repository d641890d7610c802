"""Channels that tell a person: a webhook and email."""
