from tasks.prefect_support import *
