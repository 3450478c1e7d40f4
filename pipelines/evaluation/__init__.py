"""The evaluation outside the pure kernels of :mod:`tamrf_xr.evaluation`: datasets read from
files (:mod:`.data`), the report (:mod:`.report`) and the library entry point
(:mod:`.run`: ``run_evaluation``). Not production code: it may use the simulator (the
default dataset is a simulated region)."""
