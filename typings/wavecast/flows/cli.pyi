from flows.cli import *
