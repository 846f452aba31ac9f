"""The run ledger in Table Storage: run records, and the rows that must change with them.

``records`` is the run record users see; ``runs`` stores it with its markers in one transaction.
"""
