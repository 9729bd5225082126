"""The store: tables, migrations, queries and the job queue.

Every query that touches the database lives in this package; the rest of the
code calls the named functions here.
"""
