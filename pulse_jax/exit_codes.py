"""Exit status of the ``pulse-jax`` commands and the absl runner, defined once.

A batch ends with :data:`OK` when every face has a result within eps, :data:`MISSED_EPS` when
some result missed eps, :data:`BAD_INPUT` when some input could not be used (the others were
still processed); :data:`USAGE` is a bad flag, config or checkpoint (nothing was run),
:data:`BUSY` an output folder that another run is writing into (nothing was run; the message
names that run), and :data:`INTERRUPTED` is Ctrl-C (128 + SIGINT, as shells report it; a
rerun resumes).
"""

OK = 0
BAD_INPUT = 1
USAGE = 2
MISSED_EPS = 3
BUSY = 4
INTERRUPTED = 130
