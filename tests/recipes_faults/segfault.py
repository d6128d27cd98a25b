# /// script
# requires-python = ">=3.9"
# dependencies = []
# ///
"""Fault recipe: dies of SIGSEGV, as a crashing native kernel would."""
import os
import resource
import signal

# No core file: the crash is the point, a core dump in the scratch dir is not.
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
os.kill(os.getpid(), signal.SIGSEGV)
