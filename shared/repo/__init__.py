"""SQL repository functions: each takes a connection and never opens a transaction of its own.

Every write statement inserts its outbox row in the same statement (a data-modifying CTE), so a
write is one round trip to PostgreSQL and the row and its event commit or fail together.
"""
