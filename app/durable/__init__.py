"""Durable asynchronous jobs: the records a job is made of (``records``) and the database that
keeps them across restarts and shares them between processes (``store``: SQLite by default,
PostgreSQL for several replicas). The HTTP side stores the request it accepted, a runner claims
it, replays it in-process and stores the response, so a client can fetch the result long after
its own connection closed, and a job of a killed process is queued again instead of lost.
"""
