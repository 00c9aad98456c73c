from flows.retrain import *
