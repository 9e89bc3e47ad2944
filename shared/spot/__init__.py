"""Practice 3, the spot drain, cut by step: ``deadline`` (the notice's time budget), ``record``
(outcomes, results, original weights, notifications, ports), ``machine`` (the drain as a table
of steps over the ledger's lease) and ``sweep`` (finish, undo, restore, released backends)."""
