from tasks.monitor import *
