from tasks.windows import *
