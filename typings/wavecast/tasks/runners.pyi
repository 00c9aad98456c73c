from tasks.runners import *
