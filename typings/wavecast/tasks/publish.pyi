from tasks.publish import *
