from flows.monitor import *
