# main: the boot stub. MicroPython runs only main.py, from source, at boot: the node's code is
# in lwmain and the other modules, copied as precompiled .mpy, so none of it compiles on the node.
import lwmain

lwmain.main()
