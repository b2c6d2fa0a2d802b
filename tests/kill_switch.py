"""A Keras callback source for subprocess tests that die mid-run, like a SIGKILL."""

KILL_AT_FIT = '''
import os
import keras

class Kill(keras.callbacks.Callback):
    """Exits the process, without cleanup, when the {kill_at}-th ``fit`` begins."""
    fits = 0
    def on_train_begin(self, logs=None):
        Kill.fits += 1
        if Kill.fits == {kill_at}:
            os._exit(17)
'''


def kill_switch(kill_at: int) -> str:
    """Source defining ``Kill``: paste into a subprocess script and pass ``Kill()`` as a callback."""
    return KILL_AT_FIT.format(kill_at=kill_at)
