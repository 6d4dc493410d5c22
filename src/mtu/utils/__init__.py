"""Process helpers, apart from the method: signals, threads, atomic writes, output folders, limits, images.

Importing this package loads nothing; import the module you need (`from mtu.utils.outputs import ...`).
"""
