"""brokerhooks: turns CRM webhooks into finished work."""

__version__ = "0.1.0"
