"""Adapters for shared state on a cache server: rate limit buckets in Redis.

Imported by wiring only; the runtime knows the ports these implement, never these modules.
"""
