"""Actions: one module per kind of step, behind one registry (``registry``).

``base`` holds the contract every kind implements; ``registry`` finds a kind
by name and lists what each guarantees about repeats. ``support`` reads a
step's params and opens its Microsoft 365 connection; ``outbound`` guards
the URLs that ``http_request`` and ``onedrive_upload`` reach.
"""
