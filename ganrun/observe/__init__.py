"""Everything a run shows: stats collection, TensorBoard, the console, rendered images.

The only code that writes to TensorBoard or the console. It sees names, scalars and images,
never models or configs' internals.
"""
