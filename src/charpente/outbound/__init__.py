"""Outbound requests: the Outbound port over HTTP, and which addresses it may reach."""
