"""The cost model of this stack: ``python -m cost`` (``make cost``), ``python -m cost.plot``
(``make cost-plot``), or ``from cost.model import Usage, estimate, load_prices``."""
