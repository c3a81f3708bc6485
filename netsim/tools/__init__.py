"""Tools built on the simulator: fitting its models to measurements, and keeping documents
in step with its rows.

``netsim.tools.nvlink_fit``: fit the NVLink fabric's parameters to measured all-to-all times.
``netsim.tools.docblock``: rewrite or check the generated blocks of Markdown documents from rows.
"""
