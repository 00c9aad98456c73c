"""Forecasters: the interface every kind of forecaster implements (forecaster.py), the kinds
(statistical, linear, network, combination) and the one place that knows them all by name
(kinds.py). Nothing outside kinds.py asks which kind a forecaster is."""
