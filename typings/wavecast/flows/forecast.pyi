from flows.forecast import *
