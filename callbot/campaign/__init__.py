"""Campaigns: models, calling policy, service, dispatcher, jobs, line workers and the call
runner (docs/campaigns.md)."""
