"""Secrets at rest, key lookup and redaction."""
