from tasks.retention import *
