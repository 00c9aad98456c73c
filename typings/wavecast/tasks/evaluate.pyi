from tasks.evaluate import *
