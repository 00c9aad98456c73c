from tasks.forecast import *
