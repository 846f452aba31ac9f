"""The landing zone: which blobs form a batch, what a trigger asks for, and cheap validation.

``batches`` knows the layout, ``decisions`` turns an event or a request into a pure decision,
``validation`` checks a complete batch before anything is claimed.
"""
