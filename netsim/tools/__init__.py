"""Tools built on the simulator (they run simulations; not part of the model itself).

``netsim.tools.nvlink_fit``: fit the NVLink fabric's parameters to measured all-to-all times.
"""
