"""One module per verb: ``OPTIONS`` (its flags), optional ``TAIL`` and ``run(args)``."""
