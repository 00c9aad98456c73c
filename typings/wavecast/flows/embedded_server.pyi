from flows.embedded_server import *
