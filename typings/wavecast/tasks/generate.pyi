from tasks.generate import *
