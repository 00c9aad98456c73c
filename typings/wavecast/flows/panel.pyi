from flows.panel import *
