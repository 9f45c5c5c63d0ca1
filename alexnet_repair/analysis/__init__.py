"""Reading sweep CSVs back: tables and figures of grid sweeps (:mod:`.grid`) and stochastic chains
(:mod:`.stochastic`) on a shared loader (:mod:`.common`), written as files and one HTML report (:mod:`.report`)."""
