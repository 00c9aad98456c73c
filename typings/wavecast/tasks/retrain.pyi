from tasks.retrain import *
