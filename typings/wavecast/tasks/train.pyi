from tasks.train import *
