"""Durable results: RabbitMQ publishing with an on-disk spool, the PostgreSQL schema and archive, retention.

Plain asyncio (aiormq, asyncpg); no Ray. The Serve sidecar and archiver deployments wrap these.
"""
