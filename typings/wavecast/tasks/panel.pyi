from tasks.panel import *
