"""Demo and test infrastructure: simulated regions written as COGs + STAC catalogs + ground
truth, and local STAC API servers on 127.0.0.1. Production code never imports it."""
