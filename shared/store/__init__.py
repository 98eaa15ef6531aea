"""The PostgreSQL write model: the pool, and one module of SQL per resource (connection in, no transaction).

Each repository function takes a connection and never opens a transaction of its own; a caller that needs two
statements to commit together holds the transaction.

Every write statement inserts its outbox row in the same statement (a data-modifying CTE), so a
write is one round trip to PostgreSQL and the row and its event commit or fail together.
"""
